"""Where sweep runs execute: local worker processes, or a Ray cluster.

A backend takes :class:`~dendritic.sweeps.worker.Task` objects and hands back outcome dicts
(those of :func:`~dendritic.sweeps.worker.run_task`). It never touches the store. A worker that
dies mid-run (SIGKILL, out of memory, a node lost) yields an ``ok: False`` outcome for exactly
the run it held, and the backend carries on with a fresh worker.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.connection import wait
from typing import Any, Protocol, TypeVar

from dendritic.errors import DendriticError

from .worker import Task, run_task, worker_main

__all__ = [
    "RAY_AUTH_HINT",
    "RAY_CONNECT_TIMEOUT_ENV",
    "RAY_CONNECT_TIMEOUT_S",
    "RAY_INSTALL_HINT",
    "Backend",
    "BackendError",
    "LocalBackend",
    "RayBackend",
    "MAX_WORKERS",
    "available_cpus",
    "make_backend",
    "process_map",
    "ray_connect_timeout",
]

RAY_INSTALL_HINT = "the Ray backend needs Ray: pip install 'dendritic[ray]' (or pip install 'ray[default]')"
#: What a user must set when a Ray cluster refuses the connection (docs/sweeps.md, "Ray").
RAY_AUTH_HINT = (
    "Ray enables token authentication once a token exists (~/.ray/auth_token, $RAY_AUTH_TOKEN or "
    "$RAY_AUTH_TOKEN_PATH): export RAY_AUTH_MODE=token on every node, before `ray start` and "
    "`dendritic sweep`, and give all nodes the same token (see docs/sweeps.md)"
)


#: Seconds a Ray cluster named by an address has to answer before the sweep gives up
#: (docs/sweeps.md); ``--connect-timeout`` or this variable change it.
RAY_CONNECT_TIMEOUT_S = 30.0
RAY_CONNECT_TIMEOUT_ENV = "DENDRITIC_RAY_CONNECT_TIMEOUT"
#: Largest connection timeout accepted: an hour is already far beyond any cluster's start-up.
_MAX_CONNECT_TIMEOUT_S = 3600.0
#: Ray Client's port when a ``ray://`` address names none (``ray start``'s default).
_RAY_CLIENT_PORT = 10001
#: What an HTTP/2 client sends first: the fixed preface, then an empty SETTINGS frame.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


class BackendError(DendriticError, RuntimeError):
    """An executor cannot be used (e.g. a Ray cluster refuses the connection)."""


class _ConnectDeadline(BaseException):
    """Raised by the connection deadline's alarm inside ``ray.init``. A BaseException so that
    Ray's own retry loops (``except Exception``) cannot swallow it and keep retrying."""


def ray_connect_timeout(seconds: float | None = None) -> float:
    """How long a Ray cluster address may take to answer: ``seconds``, else
    ``$DENDRITIC_RAY_CONNECT_TIMEOUT``, else 30 s; a value that is not a number of seconds in
    (0, 3600] is a one-line error."""
    where = "--connect-timeout"
    if seconds is None:
        text = os.environ.get(RAY_CONNECT_TIMEOUT_ENV, "").strip()
        if not text:
            return RAY_CONNECT_TIMEOUT_S
        where = f"${RAY_CONNECT_TIMEOUT_ENV}"
        try:
            seconds = float(text)
        except ValueError:
            raise BackendError(f"{where} must be a number of seconds, got {text!r}") from None
    if not (math.isfinite(seconds) and 0 < seconds <= _MAX_CONNECT_TIMEOUT_S):
        raise BackendError(f"{where} must be in (0, {_MAX_CONNECT_TIMEOUT_S:g}] seconds, got {seconds!r}")
    return float(seconds)


def _host_port(address: str) -> tuple[str, int] | None:
    """The TCP endpoint an address names (GCS ``host:port`` or Ray Client ``ray://host[:port]``);
    None where Ray resolves it itself (``auto``, other schemes) or the text is not host:port."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    if scheme not in ("", "ray") or rest in ("auto", "local"):
        return None
    try:
        parts = urllib.parse.urlsplit(f"//{rest}")
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number: Ray says so at once
        return None
    if port is None and scheme == "ray":
        port = _RAY_CLIENT_PORT
    if not host or port is None:
        return None
    return host, port


def _tls() -> bool:
    """Whether Ray talks TLS (``RAY_USE_TLS``): its servers then answer a TLS handshake only."""
    return os.environ.get("RAY_USE_TLS", "").strip().lower() in ("1", "true", "yes")


def _http2_problem(sock: socket.socket, deadline: float) -> str | None:
    """Send HTTP/2's client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS and its
    client server both are) answers with a SETTINGS frame. None if it does, else what it did."""
    sock.sendall(_HTTP2_PREFACE)
    header = b""
    while len(header) < 9:  # one frame header: length (3), type (1), flags (1), stream (4)
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(9 - len(header))
        if not chunk:
            return "it closed the connection without answering like a Ray server (gRPC)"
        header += chunk
    return None if header[3] == 0x04 else "it answers, but not like a Ray server (gRPC)"


def _probe_cluster(address: str, timeout: float) -> None:
    """Fail in one line unless something at the address answers like a Ray server (gRPC) within
    ``timeout``: a refused port fails at once, a silent host or a server of another protocol
    after ``timeout`` at most. Ray itself would retry such an address for minutes (a GCS
    address) or half a minute (``ray://``), printing warnings meanwhile."""
    endpoint = _host_port(address)
    if endpoint is None:
        return
    where = f"the Ray cluster at {address}" + (
        "" if address.endswith(f":{endpoint[1]}") else f" (port {endpoint[1]})"
    )
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection(endpoint, timeout=timeout) as sock:
            problem = None if _tls() else _http2_problem(sock, deadline)
        if problem is None:
            return
    except TimeoutError:
        problem = f"no answer within {timeout:g} s (--connect-timeout / ${RAY_CONNECT_TIMEOUT_ENV})"
    except OSError as exc:
        problem = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    raise BackendError(
        f"cannot connect to {where}: {problem}; is Ray running there and is this its address "
        "(host:6379 or ray://host:10001; `ray status` on the head node shows it)?"
    )


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`_ConnectDeadline` in this thread after ``seconds`` (SIGALRM; only in the
    main thread and where no other alarm is set; elsewhere the TCP probe is the only bound)."""
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _ConnectDeadline

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _ray_token_available() -> bool:
    """Whether Ray would find an authentication token for this process."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(
        os.path.expanduser("~"), ".ray", "auth_token"
    )
    return os.path.isfile(path)


def _follow_ray_start_auth_rule() -> None:
    """Connect the way ``ray start`` runs: it turns token authentication on when a token exists
    and RAY_AUTH_MODE is unset, so a client that did not would be refused (InvalidAuthToken)."""
    if "RAY_AUTH_MODE" in os.environ or not _ray_token_available():
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if "ray" in sys.modules:  # Ray read its configuration when imported: make it read it again
        try:
            from ray._raylet import Config  # type: ignore[attr-defined]

            Config.initialize("")
        except (ImportError, AttributeError):  # pragma: no cover - a Ray without token auth
            pass


#: Most local worker processes of one command (the CLI's ``--workers`` bound): each is a Python
#: process with torch loaded (~300 MB).
MAX_WORKERS = 256

_T = TypeVar("_T")
_R = TypeVar("_R")


def process_map(
    fn: Callable[[_T], _R], tasks: Sequence[_T], workers: int, *, ordered: bool = True
) -> Iterator[_R]:
    """``fn`` over ``tasks`` in up to ``workers`` processes, yielding the results in the tasks'
    order (``ordered``) or as they end. If ``fn`` raises, or the caller stops iterating, the
    processes are terminated at once (the work in flight dies with them) and the error is raised.
    For studies whose tasks record their own results (RL runs, tabular fits); sweeps, where only
    the coordinator writes, use :class:`LocalBackend`.

    The processes are spawned, not forked from multiprocessing's one fork server: that server
    keeps the environment and preloads of the moment it first started, so a pool started from
    it here would leave a later :class:`LocalBackend` with another process's settings (the
    kernel choice ``DENDRITIC_KERNEL``, say). A spawned worker costs a second or two of imports,
    little beside an RL run or a tabular part."""
    pool = mp.get_context("spawn").Pool(max(1, min(workers, len(tasks))))
    try:
        yield from (pool.imap if ordered else pool.imap_unordered)(fn, tasks)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Backend(Protocol):
    """What the coordinator needs from an executor.

    ``wait`` returns messages of finished runs (``run_task`` dicts, or ``ok: False, lost: True``
    for a run whose worker died) and, optionally, progress messages with ``kind: "epoch"``.
    """

    name: str
    slots: int

    def submit(self, task: Task) -> None: ...

    def wait(self, timeout: float) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def _death_message(pid: int | None, exitcode: int | None, host: str = "this host") -> str:
    if exitcode is not None and exitcode < 0:
        try:
            how = f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"killed by signal {-exitcode}"
    else:
        how = f"exit code {exitcode}"
    return (
        f"worker process {pid} on {host} died while training ({how}); "
        "the run is marked failed and is retried by the next invocation of the sweep"
    )


class _Worker:
    def __init__(self, ctx: Any, parent: int) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=worker_main, args=(child, parent), daemon=True)
        self.process.start()
        child.close()
        self.task: Task | None = None


class LocalBackend:
    """``workers`` processes from a fork server (or spawned), never forked from the coordinator:
    torch and a plain fork of a process that has run torch code do not mix.

    A hand-rolled pool instead of ``ProcessPoolExecutor`` because a dead worker there breaks
    the whole pool and fails every run in flight; here only the dead worker's run fails.
    """

    name = "local"

    def __init__(self, workers: int = 1, *, start_method: str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        self.slots = workers
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            # The server imports torch (and the optimiser's torch._dynamo) once, before any
            # thread exists; workers fork from it in milliseconds instead of importing for seconds.
            self._ctx.set_forkserver_preload(["dendritic.sweeps.worker", "torch", "torch._dynamo"])
        self._workers: list[_Worker] = []

    def _spawn(self) -> _Worker:
        worker = _Worker(self._ctx, os.getpid())
        self._workers.append(worker)
        return worker

    def submit(self, task: Task) -> None:
        for worker in [w for w in self._workers if w.task is None and not w.process.is_alive()]:
            worker.conn.close()  # died while idle (killed between runs): replace it
            self._workers.remove(worker)
        idle = next((w for w in self._workers if w.task is None), None)
        if idle is None:
            if len(self._workers) >= self.slots:
                raise RuntimeError("all workers are busy")
            idle = self._spawn()
        try:
            idle.conn.send(task)
        except (BrokenPipeError, OSError):  # died just now: one fresh worker, once
            idle.conn.close()
            self._workers.remove(idle)
            idle = self._spawn()
            idle.conn.send(task)
        idle.task = task

    def wait(self, timeout: float) -> list[dict[str, Any]]:
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        handles: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(wait(handles, timeout=timeout))
        outcomes: list[dict[str, Any]] = []
        for worker in busy:
            assert worker.task is not None
            dead = worker.process.sentinel in ready
            if worker.conn in ready:
                try:
                    while worker.task is not None and worker.conn.poll():
                        message = worker.conn.recv()
                        outcomes.append(message)
                        if message.get("kind") != "epoch":
                            worker.task = None
                except (EOFError, OSError):
                    dead = True
            if dead and worker.task is not None:
                worker.process.join(timeout=5)
                message = _death_message(worker.process.pid, worker.process.exitcode)
                outcomes.append({"task_id": worker.task.task_id, "ok": False, "error": message, "lost": True})
                worker.conn.close()
                self._workers.remove(worker)
        return outcomes

    def close(self) -> None:
        """Stop every worker: idle ones by message, busy ones (Ctrl-C, errors) by terminate."""
        for worker in self._workers:
            try:
                if worker.task is None:
                    worker.conn.send(None)
                else:
                    worker.process.terminate()
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 10
        for worker in self._workers:
            worker.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()
        self._workers.clear()


class RayBackend:
    """Runs tasks as Ray remote functions (``num_cpus`` = threads per run, no automatic retry).

    ``address`` None starts a local Ray instance; ``"auto"`` joins the cluster this node belongs
    to; ``ray://host:10001`` uses Ray Client. At most as many runs are in flight as the cluster
    has CPU slots, so the store's 'running' rows are runs that really run.

    A cluster address must answer within ``connect_timeout`` seconds (None: see
    :func:`ray_connect_timeout`, 30 s by default), else :class:`BackendError`: a port nobody
    listens on fails at once, a silent host or a server that is not Ray's after the timeout
    (plus at most one of Ray's own 5-second connection attempts).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        threads: int = 1,
        num_cpus: int | None = None,
        slots: int | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        joining = address is not None and address != "local"
        timeout = ray_connect_timeout(connect_timeout) if joining else None
        if joining:
            _follow_ray_start_auth_rule()
        try:
            import ray
        except ImportError:
            raise ImportError(RAY_INSTALL_HINT) from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                # "local": always a new instance, never a cluster some `ray start` left behind.
                kwargs["address"] = "local"
                kwargs["num_cpus"] = num_cpus or available_cpus()
            else:
                kwargs["address"] = address
            # Workers import dendritic from wherever the driver does (editable installs, tests).
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": _python_path()}}
            try:
                if timeout is None:
                    ray.init(**kwargs)
                else:
                    self._join(str(address), kwargs, timeout)
            except BackendError:
                raise
            except Exception as exc:
                if address is None:
                    raise
                text = " ".join(str(exc).split())[:300]
                hint = "" if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else f"; {RAY_AUTH_HINT}"
                raise BackendError(
                    f"cannot connect to the Ray cluster at {address} ({type(exc).__name__}: {text}){hint}"
                ) from None
            self._started = True
        self.threads = threads
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = slots or max(1, cpus // threads)
        self._remote = ray.remote(num_cpus=threads, max_retries=0)(run_task)
        self._pending: dict[Any, Task] = {}

    def _join(self, address: str, kwargs: dict[str, Any], timeout: float) -> None:
        """``ray.init`` on a cluster address, bounded: a TCP probe first, then a deadline."""
        started = time.monotonic()
        _probe_cluster(address, timeout)
        try:
            with _deadline(timeout - (time.monotonic() - started)):
                self._ray.init(**kwargs)
        except _ConnectDeadline:
            with contextlib.suppress(Exception):
                self._ray.shutdown()  # whatever the interrupted connection set up
            raise BackendError(
                f"cannot connect to the Ray cluster at {address}: no Ray cluster answered there "
                f"within {timeout:g} s (--connect-timeout / ${RAY_CONNECT_TIMEOUT_ENV}); is this its "
                "address (host:6379 or ray://host:10001; `ray status` on the head node shows it)?"
            ) from None

    def submit(self, task: Task) -> None:
        ref = self._remote.remote(task)
        self._pending[ref] = task

    def wait(self, timeout: float) -> list[dict[str, Any]]:
        if not self._pending:
            return []
        ray = self._ray
        done, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=timeout)
        outcomes: list[dict[str, Any]] = []
        for ref in done:
            task = self._pending.pop(ref)
            try:
                outcomes.append(ray.get(ref))
            except Exception as exc:  # the task's worker or node died (run_task itself never raises)
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                outcomes.append(
                    {
                        "task_id": task.task_id,
                        "ok": False,
                        "lost": True,
                        "error": f"Ray lost the run ({type(exc).__name__}: {text}); "
                        "it is retried by the next invocation of the sweep",
                    }
                )
        return outcomes

    def close(self) -> None:
        for ref in list(self._pending):
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        self._pending.clear()
        if self._started:
            self._started = False
            self._ray.shutdown()


def _python_path() -> str:
    """The driver's import path for dendritic, prepended to any PYTHONPATH the workers have."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # .../src
    parts: Iterable[str] = [here, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(parts))


def make_backend(
    name: str,
    *,
    workers: int = 1,
    threads: int | None = None,
    address: str | None = None,
    connect_timeout: float | None = None,
) -> Backend:
    """``local`` or ``ray``; a missing Ray is a one-line ImportError telling how to install it."""
    if name == "local":
        return LocalBackend(workers)
    if name == "ray":
        return RayBackend(
            address, threads=threads or 1, num_cpus=None, slots=None, connect_timeout=connect_timeout
        )
    raise ValueError(f"unknown backend {name!r}; use local or ray")
