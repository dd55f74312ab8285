"""The C++ operators (``torch.ops.dendritic``, ``csrc/ops.cpp``): loading them, and the
functional API over them.

``sparse_matmul_t`` is a sparse layer's product over its real connections; ``dendritic_layer_t``
a whole dendro-somatic layer of a dANN fused into one pass; the small C++ pieces of a training
step are ``head_loss_t`` (output layer + cross-entropy + accuracy count), ``feature_major`` (the
batch transposed) and ``adam_step_`` (used by ``dendritic.training.optim``); for one-layer dANNs,
``train_steps_t`` runs many whole training steps in one call (the same kernels in the same order)
and ``evaluate_dann_t`` a whole evaluation set. Modules (``dendritic.nn``) call the registered
operators directly with their wiring in buffers; this module's functions keep the wiring's
derived tables in a cache instead, for callers with bare tensors.

Activations are feature-major: ``h`` is ``(n_in, B)``, the result ``(n_out, B)``. The wiring is
CSR over outputs (``offsets`` (n_out,) start of each output's connections, ``indices`` (nnz,) input
per connection, ``weight`` (nnz,)). With ``o(c)`` the output owning connection ``c``::

    out[o, :]     = Σ_c weight[c] · h[indices[c], :]
    grad_weight[c] = ⟨grad_out[o(c), :], h[indices[c], :]⟩
    grad_h[i, :]   = Σ_{c: indices[c] = i} weight[c] · grad_out[o(c), :]

Backends (``DENDRITIC_KERNEL=bag|cpp``, default: ``cpp`` where it builds, else ``bag``):

* ``cpp`` — the operators, built at install time (``setup.py``) or on first use
  (``torch.utils.cpp_extension``, ~20 s once, then loaded from torch's extensions cache); see
  :mod:`dendritic.layers.buildinfo`. Forward and grad-weight parallelise over outputs with
  ``at::parallel_for`` (so ``torch.set_num_threads`` applies), holding a block of the batch in
  vector registers. grad-h is a *gather* over a transposed CSR (input → its connections), tiled
  by blocks of :data:`GRAD_BLOCK` outputs (more in huge layers: :func:`grad_block`) so the slice
  of ``grad_out`` being read stays in L2.
  Every output or input row is written by one thread in a fixed order, so results do not depend
  on the thread count.
* ``bag`` — ``F.embedding_bag`` over the transposed input: used on CUDA, for dtypes other than
  float32/float64, and where the build fails.

**The fused layer** (``dendritic_layer_t``): one C++ call computes dendrite = leaky(Σ synapses +
bias) and, while that row of the batch is still in registers, adds it into its soma, then soma =
leaky(Σ + bias). The (dendrites, B) activations are written once, for the backward (not at all
under ``no_grad`` unless asked for), instead of being written by the product and then read and
rewritten by the bias add, the activation, the soma product and their three backward passes. The
backward is one call too: per soma, the gradient through its leaky-ReLU (read off the saved
output), its bias and weights, then per dendrite the gradient through its activation, bias and
synapses — the pre-activation gradient of the dendrites is only materialised when the layer's
input needs a gradient (deeper layers), and then goes through ``spmm_t_transposed``. Each soma is
one thread's work; the sums run in the same order as the layer-by-layer path, so the forward is
the same to the last bit (up to how a compiler contracts a multiply-add) and the gradients agree
to float rounding (tested). ``DENDRITIC_FUSED=0`` turns it off. Measurements and the designs that
lost are in ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils.weak import WeakIdKeyDictionary

from dendritic.layers import buildinfo

__all__ = [
    "available_kernels",
    "dendritic_layer_t",
    "denormals_flushed",
    "fused_layers_enabled",
    "head_loss_t",
    "kernel_backend",
    "sparse_matmul_t",
    "evaluate_dann_t",
    "flush_denormals",
    "train_steps_t",
]

log = logging.getLogger(__name__)

ENV_VAR = "DENDRITIC_KERNEL"
FUSED_ENV_VAR = "DENDRITIC_FUSED"
BACKENDS = ("bag", "cpp")
_OPS_NAMESPACE = "dendritic"
#: Outputs per tile of the grad-input kernel, which the transposed wiring is built for: a
#: (512, 128) float32 slice of the output gradient stays in L2 (the paper's batch of 128).
GRAD_BLOCK = 512
#: The blocked tables hold ``n_blocks · n_in + 1`` start offsets: quadratic in the layer's size
#: for a fixed block (10 M somata over 80 M dendrites would need 12.5 TB). Above this many per
#: connection (or 2^20 in all) the block grows so that the tables stay linear in the wiring (the
#: same sums, grouped by other tiles: equal up to rounding). No layer of the paper's grids is
#: that large, so their gradients keep their bits.
_STARTS_PER_CONNECTION = 4
_STARTS_FLOOR = 1 << 20
# grad-h reads grad_out one block of outputs at a time; a block of this many bytes stays in L2.
_BLOCK_BYTES = 1 << 18

#: The C++ source of the operators (also compiled by setup.py at install time).
SOURCE = buildinfo.SOURCE


# --------------------------------------------------------------------------- building the extension


@dataclass
class _LoadState:
    """Outcome of the one build/load attempt per process (``None`` until tried)."""

    ok: bool | None = None
    built: bool = False  # compiled in this process, rather than loaded from the cache
    source: str = ""  # "installed" (setup.py), "cache" (an earlier first use) or "built" (now)
    library: str = ""
    error: str = ""
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATE = _LoadState()
_CPP_DTYPES = (torch.float32, torch.float64)


def _ops() -> Any:
    return getattr(torch.ops, _OPS_NAMESPACE)


def _cache_directory() -> Path:
    """Where built kernels live: torch's extensions cache (``TORCH_EXTENSIONS_DIR`` moves it)."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    return Path(root) / f"py{sys.version_info.major}{sys.version_info.minor}_cpu" / _OPS_NAMESPACE


@contextlib.contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    """Let one process at a time build into ``directory`` (``flock``: freed when its holder dies).

    Only saves duplicate work: every build happens in a private directory and its library is
    renamed into place atomically, so even without the lock no process can load a half-written one.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(directory / "build.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _compile(name: str, library: Path, cflags: list[str], ldflags: list[str]) -> None:
    """Build ``library`` in a fresh private directory with torch's ``cpp_extension``, then move it in.

    torch's own cross-process guard is a lock *file* in the build directory, which a killed build
    leaves behind and on which later processes then wait forever; a private directory per build
    never shares it. ``load`` also loads the library, registering the ops in this process.
    """
    from torch.utils.cpp_extension import load

    for stale in library.parent.glob("build-*"):  # left by killed builds
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 3600:
                shutil.rmtree(stale, ignore_errors=True)
    build = Path(tempfile.mkdtemp(prefix="build-", dir=library.parent))
    try:
        source = build / "ops.cpp"
        shutil.copyfile(buildinfo.SOURCE, source)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load(
                name=name,
                sources=[str(source)],
                extra_cflags=cflags,
                extra_ldflags=ldflags,
                build_directory=str(build),
                is_python_module=False,
                verbose=False,
            )
        for item in caught:
            log.info("while building the C++ kernels: %s", item.message)
        os.replace(build / f"{name}.so", library)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _ops_loaded() -> bool:
    return hasattr(getattr(torch.ops, _OPS_NAMESPACE), "spmm_t")


def _prebuilt(tag: str, build: str) -> Path | None:
    """The library ``setup.py`` compiled into the package, if it was built for exactly this source,
    these flags, this torch and this CPU's instruction set (all in the build id of its name)."""
    package = Path(__file__).resolve().parent.parent
    return next(iter(sorted(package.glob(f"{buildinfo.library_stem(tag, build)}.*so"))), None)


def _load_cpp() -> bool:
    """Load the C++ operators: the library built at install time if it matches, else a cached
    or new build of ``csrc/ops.cpp``; on any failure warn once and return False.

    Every library is tied to a build id (a hash of the source, the flags and the torch version),
    so a changed kernel or a new torch builds afresh, and a cached build loads without compiler
    or ninja.
    """
    state = _STATE
    if state.ok is not None:
        return state.ok
    with state.lock:
        if state.ok is not None:
            return state.ok
        start = time.perf_counter()
        try:
            if not _ops_loaded():
                tag, _ = buildinfo.isa_flags()
                build = buildinfo.build_id()
                library = _prebuilt(tag, build)
                if library is not None:
                    state.source = "installed"
                else:
                    name = f"{_OPS_NAMESPACE}_{tag}_{build}"
                    directory = _cache_directory()
                    directory.mkdir(parents=True, exist_ok=True)
                    library = directory / f"{name}.so"
                    state.source = "cache"
                    if not library.exists():
                        with _build_lock(directory):
                            if not library.exists():
                                _compile(name, library, buildinfo.compile_flags(), buildinfo.link_flags())
                                state.built = True
                                state.source = "built"
                if not _ops_loaded():
                    torch.ops.load_library(str(library))  # type: ignore[no-untyped-call]
                state.library = str(library)
            if not _ops_loaded():
                raise RuntimeError("the extension loaded but registered no kernels")
            from dendritic.layers.ops import register

            register()  # fake kernels and autograd formulas: torch.compile and export see real ops
            state.ok = True
        except Exception as error:  # any failure (no compiler, no ninja, ...) means: use bag
            state.ok = False
            state.error = f"{type(error).__name__}: {error}"
            warnings.warn(
                "dendritic: could not build the C++ sparse kernels; using embedding_bag instead "
                f"({state.error[:800]})",
                RuntimeWarning,
                stacklevel=3,
            )
        state.seconds = time.perf_counter() - start
        log.info(
            "C++ sparse kernels %s in %.1f s",
            ("built" if state.built else "loaded") if state.ok else "unavailable",
            state.seconds,
        )
        return state.ok


def flush_denormals(on: bool) -> bool | None:
    """Flush denormal floats to zero (``on``) or not, on the calling thread and every thread of
    torch's OpenMP pool; returns the calling thread's previous setting (None where unknown).

    Why: arithmetic on denormals (below 1.2e-38 in float32) is up to a hundred times slower on
    x86, and a network trained class by class produces them: a vANN's first class-sequential epoch
    took 7.6 s instead of 2.0 s with the same numbers. TensorFlow, the paper's framework, flushes
    them around its CPU ops. ``torch.set_flush_denormal`` sets the calling thread only; without
    the C++ library that is all this does too."""
    library = _STATE.library if _load_cpp() else None
    if library is not None:
        try:
            function = _flusher(library)
        except (OSError, AttributeError):  # a library built before the function existed
            function = None
        if function is not None:
            before = int(function(1 if on else 0))
            return None if before < 0 else bool(before)
    torch.set_flush_denormal(on)
    return None


@contextlib.contextmanager
def denormals_flushed(on: bool = True) -> Iterator[None]:
    """Denormals flushed to zero inside the block (if ``on``; :func:`flush_denormals`), the
    previous setting back after."""
    if not on:
        yield
        return
    before = flush_denormals(True)
    try:
        yield
    finally:
        if not before:
            flush_denormals(False)


@functools.lru_cache(maxsize=4)
def _flusher(library: str) -> Any:
    import ctypes

    function = ctypes.CDLL(library).dendritic_flush_denormals
    function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
    return function


def _requested() -> str:
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value not in ("auto", *BACKENDS):
        raise ValueError(f"{ENV_VAR}={value!r}: choose one of auto, {', '.join(BACKENDS)}")
    return value


def available_kernels() -> list[str]:
    """Backends usable on CPU in this process (builds the C++ one on first call)."""
    return ["bag", "cpp"] if _load_cpp() else ["bag"]


def kernel_backend() -> str:
    """The CPU backend ``sparse_matmul_t`` uses now: ``DENDRITIC_KERNEL`` if set, else the fastest built.

    CUDA tensors always use ``bag``. Forcing ``cpp`` where it cannot be built warns and gives ``bag``.
    """
    requested = _requested()
    if requested == "bag":
        return "bag"
    return "cpp" if _load_cpp() else "bag"


# --------------------------------------------------------------------------- wiring plans


@dataclass
class _Plan:
    """What one wiring needs beyond its tensors, validated once and cached while they are unchanged.

    Never holds the caller's ``indices`` (the cache's key) strongly, or entries would never die.
    """

    offsets_ref: weakref.ref[torch.Tensor]
    versions: tuple[int | None, int | None]
    n_in: int
    n_out: int
    fan_in: int | None
    converted: tuple[torch.Tensor, torch.Tensor] | None  # int64 contiguous copies if the caller's are not
    transposed: dict[int, tuple[torch.Tensor, ...]] = field(default_factory=dict)

    def wiring(self, indices: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.converted if self.converted is not None else (indices, offsets)

    def tables(self, indices: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The transposed wiring the grad-input kernel reads (built on first need)."""
        idx, off = self.wiring(indices, offsets)
        block = grad_block(self.n_out, self.n_in, idx.numel())
        if block not in self.transposed:
            self.transposed[block] = transposed_wiring(idx, off, self.n_in, block)
        return self.transposed[block]


# Keyed by the indices tensor's identity (tensors compare element-wise, so not by equality).
_PLANS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _version(t: torch.Tensor) -> int | None:
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors have no version counter
        return None


def _validate(
    indices: torch.Tensor, offsets: torch.Tensor, n_in: int, n_out: int, fan_in: int | None
) -> None:
    if indices.dim() != 1 or offsets.dim() != 1:
        raise ValueError("indices and offsets must be 1-D")
    if indices.dtype not in (torch.int64, torch.int32) or offsets.dtype not in (torch.int64, torch.int32):
        raise TypeError("indices and offsets must be integer tensors")
    nnz = indices.numel()
    if n_out > 0:
        if int(offsets[0]) != 0:
            raise ValueError("offsets[0] must be 0")
        if n_out > 1 and bool((offsets[1:] < offsets[:-1]).any()):
            raise ValueError("offsets must be non-decreasing")
        if int(offsets[-1]) > nnz:
            raise ValueError("offsets point past the end of indices")
    elif nnz:
        raise ValueError("a layer without outputs cannot have connections")
    if nnz and (int(indices.min()) < 0 or int(indices.max()) >= n_in):
        raise IndexError(f"connection indices must lie in [0, {n_in})")
    if fan_in is not None:
        expected = torch.arange(n_out, dtype=torch.int64) * fan_in
        if nnz != n_out * fan_in or not torch.equal(offsets.to(torch.int64), expected):
            raise ValueError(f"fan_in={fan_in} does not match offsets")


def _plan(indices: torch.Tensor, offsets: torch.Tensor, n_in: int, n_out: int, fan_in: int | None) -> _Plan:
    versions = (_version(indices), _version(offsets))
    cache = _PLANS
    plan: _Plan | None = cache.get(indices)  # type: ignore[no-untyped-call]
    if (
        plan is not None
        and plan.offsets_ref() is offsets
        and plan.versions == versions
        and (plan.n_in, plan.n_out, plan.fan_in) == (n_in, n_out, fan_in)
    ):
        return plan
    _validate(indices, offsets, n_in, n_out, fan_in)
    converted = None
    if not all(t.dtype == torch.int64 and t.is_contiguous() for t in (indices, offsets)):
        converted = (indices.to(torch.int64).contiguous(), offsets.to(torch.int64).contiguous())
    plan = _Plan(weakref.ref(offsets), versions, n_in, n_out, fan_in, converted)
    if None not in versions:
        cache[indices] = plan
    return plan


def transposed_wiring(
    indices: torch.Tensor, offsets: torch.Tensor, n_in: int, block: int | None = None
) -> tuple[torch.Tensor, ...]:
    """The wiring as the grad-input kernel reads it (``dendritic::transpose_blocked``): modules
    build it once, as buffers, so the backward of their operators needs no cache. ``block``
    defaults to :func:`grad_block` of the layer's sizes."""
    if block is None:
        block = grad_block(offsets.numel(), n_in, indices.numel())
    return tuple(
        _ops().transpose_blocked(
            indices.to(torch.int64).contiguous(), offsets.to(torch.int64).contiguous(), n_in, block
        )
    )


def grad_block(n_out: int, n_in: int, nnz: int) -> int:
    """Outputs per tile of the grad-input kernel for a layer of these sizes: :data:`GRAD_BLOCK`,
    or more where its start offsets would outgrow the wiring itself."""
    limit = max(_STARTS_PER_CONNECTION * nnz, _STARTS_FLOOR)
    if -(-n_out // GRAD_BLOCK) * n_in <= limit:
        return GRAD_BLOCK
    return max(GRAD_BLOCK, -(-n_out // max(1, limit // max(n_in, 1))))


def n_blocks(n_out: int, n_in: int, nnz: int) -> int:
    """Tiles of the grad-input kernel: what :func:`transposed_wiring` built the tables for."""
    block = grad_block(n_out, n_in, nnz)
    return (n_out + block - 1) // block


def transposed_bytes(n_out: int, n_in: int, nnz: int) -> int:
    """Bytes of a layer's transposed tables (int64): start offsets, two entries per connection,
    fan-out. Memory checks count them before a layer is built."""
    return 8 * (n_blocks(n_out, n_in, nnz) * n_in + 1 + 2 * nnz + n_in + 1)


def dendritic_tables_bytes(
    n_in: int, units: int, fan_in: int, dendrites: int, somata: int, *, sampled: bool, own_cables: bool
) -> int:
    """Bytes of the transposed tables a dendro-somatic layer keeps as buffers: its first stage's
    (``units`` outputs of ``fan_in`` sampled inputs, where ``sampled``; all-to-all has none) and
    its cables' (``dendrites`` → ``somata``, one cable each, where ``own_cables``)."""
    total = transposed_bytes(units, n_in, units * fan_in) if sampled else 0
    if own_cables:
        total += transposed_bytes(somata, dendrites, dendrites)
    return total


def _bag(h: torch.Tensor, weight: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return F.embedding_bag(indices, h, offsets, mode="sum", per_sample_weights=weight)


def sparse_matmul_t(
    h: torch.Tensor,
    weight: torch.Tensor,
    indices: torch.Tensor,
    offsets: torch.Tensor,
    n_out: int,
    fan_in: int | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Feature-major sparse product ``(n_in, B) → (n_out, B)`` over the CSR wiring; no bias.

    ``out[o] = Σ_c weight[c] · h[indices[c]]`` over ``c`` in ``offsets[o] : offsets[o + 1]`` (the last
    output runs to ``len(indices)``; empty outputs give zeros). ``offsets[0]`` must be 0.
    Differentiable in ``h`` and ``weight``; grad-h is only computed when ``h`` requires grad.

    ``fan_in``, if given, asserts that every output has exactly that many connections (checked
    once per wiring). ``backend`` (``"bag"``/``"cpp"``) overrides ``DENDRITIC_KERNEL`` for this call.
    Wiring checks and derived tables are cached per ``indices`` tensor (by identity, refreshed when
    it or ``offsets`` is modified in place), so pass the same buffers every step.
    """
    if offsets.numel() != n_out:
        raise ValueError(f"offsets has {offsets.numel()} entries for {n_out} outputs")
    if weight.numel() != indices.numel():
        raise ValueError(f"weight has {weight.numel()} entries for {indices.numel()} connections")
    if backend is None:
        backend = _requested()
    elif backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
    use_cpp = (
        backend != "bag"
        and h.is_cpu
        and weight.is_cpu
        and indices.is_cpu
        and offsets.is_cpu
        and h.dim() == 2
        and h.dtype in _CPP_DTYPES
        and weight.dtype == h.dtype
        and _load_cpp()
    )
    if not use_cpp:
        return _bag(h, weight, indices, offsets)
    plan = _plan(indices, offsets, h.shape[0], n_out, fan_in)
    h, weight = h.contiguous(), weight.contiguous()
    idx, off = plan.wiring(indices, offsets)
    out: torch.Tensor
    if not (torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)):
        out = _ops().spmm_t(h, weight, idx, off, n_out)  # no graph to record: skip autograd's overhead
    else:
        out = _ops().sparse_linear_t(
            h,
            weight,
            idx,
            off,
            *plan.tables(indices, offsets),
            n_out,
            n_blocks(n_out, h.shape[0], idx.numel()),
        )
    return out


# --------------------------------------------------------------------------- fused dendro-somatic layer


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]
def fusion_enabled() -> bool:
    """Whether the fused C++ paths may run in this process: the C++ operators are loaded and
    ``DENDRITIC_FUSED`` is not ``0`` (the switch that gives back the layer-by-layer path).
    ``torch.compile`` reads it once, while tracing."""
    if os.environ.get(FUSED_ENV_VAR, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return kernel_backend() == "cpp"


def fused_layers_enabled(h: torch.Tensor) -> bool:
    """Whether :func:`dendritic_layer_t` runs for activations like ``h`` in this process: the
    fused paths are on (:func:`fusion_enabled`) and ``h`` is a CPU float32/float64 tensor."""
    return h.is_cpu and h.dtype in _CPP_DTYPES and fusion_enabled()


def dendritic_layer_t(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias_d: torch.Tensor,
    indices: torch.Tensor,
    offsets: torch.Tensor,
    weight_s: torch.Tensor,
    bias_s: torch.Tensor,
    per_soma: int,
    slope: float,
    *,
    keep_dendrites: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(n_in, B)`` → somata ``(S, B)`` of a dendro-somatic layer, in one fused C++ pass.

    Dendrite d = leaky(Σ_c weight[c] · h[indices[c]] + bias_d[d]) over its CSR connections;
    soma s = leaky(Σ_k weight_s[s·D + k] · dendrite(s·D + k) + bias_s[s]) with D = ``per_soma``
    (the blocks wiring of dANNs: each soma sums only its own dendrites). Returns the somata and,
    when recorded (``keep_dendrites``, or always while autograd records), the dendrites' (n_dend,
    B) activations, differentiable. Callers check :func:`fused_layers_enabled` first.
    """
    n_dend = offsets.numel()
    if per_soma < 1 or bias_s.numel() * per_soma != n_dend or weight_s.numel() != n_dend:
        raise ValueError(f"{n_dend} dendrites cannot form {bias_s.numel()} somata of {per_soma}")
    if not 0.0 < slope < 1.0:
        raise ValueError(f"the fused layer needs a leaky-ReLU slope in (0, 1), got {slope}")
    plan = _plan(indices, offsets, h.shape[0], n_dend, None)
    h = h.contiguous()
    params = (weight, bias_d, weight_s, bias_s)
    idx, off = plan.wiring(indices, offsets)
    if torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in params)):
        out, dendrites = _ops().dendritic_layer_t(
            h, weight, idx, off, *plan.tables(indices, offsets), n_blocks(n_dend, h.shape[0], idx.numel()),
            bias_d, weight_s, bias_s,
            per_soma, slope, True,
        )  # fmt: skip
        return out, (dendrites if keep_dendrites else None)
    out, dendrites = _ops().dendritic_layer(
        h,
        weight.detach(),
        idx,
        off,
        bias_d.detach(),
        weight_s.detach(),
        bias_s.detach(),
        per_soma,
        slope,
        keep_dendrites,
    )
    return out, (dendrites if keep_dendrites else None)


def feature_major(x: torch.Tensor) -> torch.Tensor:
    """``(B, n)`` → contiguous ``(n, B)``: the layers' layout. A tiled C++ copy for CPU
    float32/float64 (about 4× faster than ``x.t().contiguous()`` for a batch of images), torch's
    copy elsewhere (other dtypes, other devices)."""
    if (
        x.dim() == 2
        and x.is_cpu
        and x.dtype in _CPP_DTYPES
        and x.is_contiguous()
        and not x.requires_grad
        and kernel_backend() == "cpp"
    ):
        out: torch.Tensor = _ops().transpose_2d(x)
        return out
    return x.t().contiguous()


# --------------------------------------------------------------------------- output layer + loss


class _HeadLossT(torch.autograd.Function):
    """Output layer, softmax cross-entropy and accuracy count of a step: one C++ call each way."""

    @staticmethod
    def forward(
        ctx: Any, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss, probs, correct = _ops().head_forward(h, weight, bias, target)
        ctx.save_for_backward(probs, h, weight, target)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_loss: torch.Tensor, _grad_correct: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        probs, h, weight, target = ctx.saved_tensors
        grad_h, grad_w, grad_b = _ops().head_backward(
            grad_loss, probs, h, weight, target, bool(ctx.needs_input_grad[0])
        )
        return (grad_h if ctx.needs_input_grad[0] else None), grad_w, grad_b, None


def head_loss_t(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of ``weight · h + bias`` (h feature-major ``(S, B)``) against
    ``target``, and the number of correct argmax predictions (not differentiable).

    The same numbers as ``F.cross_entropy(F.linear(h.t(), weight, bias), target)`` to float
    rounding; C++ on the CPU (check :func:`fused_layers_enabled` first).
    """
    h = h.contiguous()
    loss, correct = _HeadLossT.apply(h, weight, bias, target.contiguous())  # type: ignore[no-untyped-call]
    return loss, correct


# --------------------------------------------------------------------------- whole training steps


def train_steps_t(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    order: torch.Tensor,
    batch: int,
    params: list[torch.Tensor],
    indices: torch.Tensor,
    offsets: torch.Tensor,
    per_soma: int,
    slope: float,
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    loss_sum: torch.Tensor,
    correct: torch.Tensor,
    *,
    keras: bool = False,
) -> None:
    """``ceil(len(order) / batch)`` Adam steps of a one-layer dANN in one C++ call.

    ``params`` = [dendrite weights, dendrite biases, soma weights, soma biases, output weight
    (C, S), output bias], updated in place with their moments; ``step`` is the number of steps
    already taken. The batch's summed loss and correct count are added to ``loss_sum`` (the
    parameters' dtype) and ``correct`` (int64); ``keras`` selects Keras's form of Adam (ε added
    to the uncorrected √v, see :class:`dendritic.training.optim.Adam`). Each step runs the same
    kernels in the same order as
    ``dendritic_layer_t`` + ``head_loss_t`` + ``Adam``, without the per-step Python and autograd
    (about 1.8 ms of a 3.5 ms step at D=16, S=256). Callers check :func:`fused_layers_enabled`.
    """
    n_dend = offsets.numel()
    if len(params) != 6 or len(exp_avgs) != 6 or len(exp_avg_sqs) != 6:
        raise ValueError("train_steps_t takes six parameters and their two moments each")
    plan = _plan(indices, offsets, x_train.shape[1], n_dend, None)
    idx, off = plan.wiring(indices, offsets)
    if order.dtype != torch.int64:
        raise TypeError(f"order must be int64 sample indices, got {order.dtype}")
    with torch.no_grad():
        _ops().train_steps(
            x_train,
            y_train,
            order.contiguous(),
            int(batch),
            [p.detach() for p in params],
            exp_avgs,
            exp_avg_sqs,
            idx,
            off,
            int(per_soma),
            float(slope),
            int(step),
            float(lr),
            float(betas[0]),
            float(betas[1]),
            float(eps),
            bool(keras),
            loss_sum,
            correct,
        )


def evaluate_dann_t(
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    params: list[torch.Tensor],
    indices: torch.Tensor,
    offsets: torch.Tensor,
    per_soma: int,
    slope: float,
) -> tuple[float, int]:
    """(Σ cross-entropy, correct count) of a one-layer dANN over ``x`` (N, n_in), in batches of
    ``batch``, in one C++ call: the forward of :func:`train_steps_t` without gradients or the
    per-batch Python of ``model(x)`` (most of an evaluation for small models)."""
    if len(params) != 6:
        raise ValueError("evaluate_dann_t takes six parameters")
    plan = _plan(indices, offsets, x.shape[1], offsets.numel(), None)
    idx, off = plan.wiring(indices, offsets)
    total, hits = _ops().evaluate_dann(
        x.contiguous(),
        y.contiguous(),
        int(batch),
        [p.detach() for p in params],
        idx,
        off,
        int(per_soma),
        float(slope),
    )
    return float(total.item()), int(hits.item())
