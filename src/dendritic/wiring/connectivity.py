"""`Connectivity`: who connects to whom in one layer, as explicit index data.

A layer's wiring is stored in CSR form over its *outputs*: output unit ``o`` receives the inputs
``indices[indptr[o]:indptr[o + 1]]`` (sorted ascending). All-to-all wiring stores no indices.
This is the single source of truth: sparse layers read it, checkpoints save it, and
:meth:`Connectivity.to_mask` shows it as the dense 0/1 matrix the reference implementation uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["Connectivity"]


@dataclass(frozen=True, eq=False)
class Connectivity:
    """Connections from ``n_in`` input units to ``n_out`` output units.

    Build one with the constructors (:meth:`from_table`, :meth:`from_pairs`, :meth:`from_mask`,
    :meth:`blocks`, :meth:`all_to_all`) rather than directly: they sort and validate.
    """

    n_in: int
    n_out: int
    indptr: np.ndarray | None = None  # (n_out + 1,) int64; None means all-to-all
    indices: np.ndarray | None = None  # (nnz,) int64, sorted within each output
    #: Receptive-field centre (flat pixel index) of every output, where the wiring has one.
    centres: np.ndarray | None = field(default=None, compare=False, repr=False)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def all_to_all(cls, n_in: int, n_out: int) -> Connectivity:
        _check_sizes(n_in, n_out)
        return cls(int(n_in), int(n_out))

    @classmethod
    def from_table(cls, table: np.ndarray, n_in: int) -> Connectivity:
        """Every output ``o`` receives exactly the inputs in ``table[o]`` (distinct)."""
        table = np.asarray(table)
        if table.ndim != 2:
            raise ValueError(f"a connection table must be 2-D (outputs, fan-in), got {table.shape}")
        n_out, k = table.shape
        _check_sizes(n_in, n_out)
        if k == 0:
            raise ValueError("a connection table needs at least one input per output")
        table = np.sort(table.astype(np.int64, copy=False), axis=1)
        if table[:, 0].min() < 0 or table[:, -1].max() >= n_in:
            raise ValueError(f"connection table refers to inputs outside 0..{n_in - 1}")
        if k > 1 and np.any(np.diff(table, axis=1) == 0):
            raise ValueError("connection table has a repeated input within one output")
        indptr = np.arange(0, n_out * k + 1, k, dtype=np.int64)
        return cls(int(n_in), int(n_out), indptr, table.reshape(-1))

    @classmethod
    def from_pairs(cls, outputs: np.ndarray, inputs: np.ndarray, n_in: int, n_out: int) -> Connectivity:
        """Connections given as (output, input) pairs, in any order; duplicates are an error."""
        _check_sizes(n_in, n_out)
        outputs = np.asarray(outputs, dtype=np.int64).reshape(-1)
        inputs = np.asarray(inputs, dtype=np.int64).reshape(-1)
        if outputs.shape != inputs.shape:
            raise ValueError("outputs and inputs must have the same length")
        if outputs.size and (outputs.min() < 0 or outputs.max() >= n_out):
            raise ValueError(f"connection pairs refer to outputs outside 0..{n_out - 1}")
        if inputs.size and (inputs.min() < 0 or inputs.max() >= n_in):
            raise ValueError(f"connection pairs refer to inputs outside 0..{n_in - 1}")
        flat = outputs * n_in + inputs
        order = np.argsort(flat, kind="stable")
        flat = flat[order]
        if flat.size > 1 and np.any(np.diff(flat) == 0):
            raise ValueError("connection pairs contain a duplicate connection")
        counts = np.bincount(outputs, minlength=n_out)
        indptr = np.zeros(n_out + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(int(n_in), int(n_out), indptr, flat % n_in)

    @classmethod
    def from_csr(cls, n_in: int, n_out: int, indptr: np.ndarray, indices: np.ndarray) -> Connectivity:
        """From CSR arrays as stored (checkpoints): every invariant is checked, because a bad
        index would make the kernels read outside their inputs."""
        _check_sizes(n_in, n_out)
        indptr, indices = np.asarray(indptr), np.asarray(indices)
        for name, arr in (("indptr", indptr), ("indices", indices)):
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"CSR {name} must be a 1-D integer array, got {arr.dtype} of shape {arr.shape}"
                )
        if indptr.shape[0] != n_out + 1:
            raise ValueError(f"CSR indptr has {indptr.shape[0]} entries, expected n_out + 1 = {n_out + 1}")
        indptr, indices = indptr.astype(np.int64), indices.astype(np.int64)
        if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
            raise ValueError("CSR indptr must rise from 0 to the number of indices")
        if indices.size and (indices.min() < 0 or indices.max() >= n_in):
            raise ValueError(f"CSR indices refer to inputs outside 0..{n_in - 1}")
        if indices.size > 1:
            row_start = np.zeros(indices.size, dtype=bool)
            row_start[indptr[:-1][indptr[:-1] < indices.size]] = True
            if np.any((np.diff(indices) <= 0) & ~row_start[1:]):
                raise ValueError("CSR indices must be sorted and distinct within each output")
        return cls(int(n_in), int(n_out), indptr, indices)

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> Connectivity:
        """From a dense 0/1 matrix of shape ``(n_in, n_out)`` (the Keras kernel orientation).

        A mask of all ones becomes all-to-all wiring, so a dense layer stays dense.
        """
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"a connectivity mask must be 2-D (inputs, outputs), got {mask.shape}")
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError("a connectivity mask may hold only 0 and 1")
        n_in, n_out = mask.shape
        if mask.all():
            return cls.all_to_all(n_in, n_out)
        inputs, outputs = np.nonzero(mask)
        return cls.from_pairs(outputs, inputs, n_in, n_out)

    @classmethod
    def blocks(cls, n_out: int, block: int) -> Connectivity:
        """Output ``o`` owns the private inputs ``o*block … o*block + block - 1`` (somata → dendrites)."""
        _check_sizes(n_out * block, n_out)
        table = np.arange(n_out * block, dtype=np.int64).reshape(n_out, block)
        return cls.from_table(table, n_out * block)

    def with_centres(self, centres: np.ndarray) -> Connectivity:
        """The same wiring, annotated with one receptive-field centre per output."""
        centres = np.asarray(centres, dtype=np.int64)
        if centres.shape != (self.n_out,):
            raise ValueError(f"need one centre per output ({self.n_out}), got shape {centres.shape}")
        return replace(self, centres=centres)

    # ----------------------------------------------------------------- views
    @property
    def is_all_to_all(self) -> bool:
        return self.indptr is None

    @property
    def n_connections(self) -> int:
        if self.indptr is None:
            return self.n_in * self.n_out
        return int(self.indptr[-1])

    @property
    def fan_in(self) -> np.ndarray:
        """Number of inputs of every output unit."""
        if self.indptr is None:
            return np.full(self.n_out, self.n_in, dtype=np.int64)
        return np.diff(self.indptr)

    @property
    def uniform_fan_in(self) -> int | None:
        """The common fan-in if every output has the same number of inputs, else ``None``."""
        fan_in = self.fan_in
        return int(fan_in[0]) if fan_in.size and np.all(fan_in == fan_in[0]) else None

    def table(self) -> np.ndarray:
        """The ``(n_out, fan_in)`` input table; only for uniform fan-in."""
        k = self.uniform_fan_in
        if k is None or self.indices is None:
            raise ValueError("this wiring has no fixed fan-in, so it has no table")
        return self.indices.reshape(self.n_out, k)

    @property
    def is_blocks(self) -> bool:
        """True when output ``o`` owns inputs ``o*k … o*k+k-1`` (the dendrite → soma structure)."""
        k = self.uniform_fan_in
        return (
            self.indices is not None
            and k is not None
            and self.n_in == self.n_out * k
            and np.array_equal(self.indices, np.arange(self.n_in, dtype=np.int64))
        )

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(output, input) index arrays of every connection, output-major."""
        if self.indptr is None or self.indices is None:
            outputs = np.repeat(np.arange(self.n_out, dtype=np.int64), self.n_in)
            inputs = np.tile(np.arange(self.n_in, dtype=np.int64), self.n_out)
            return outputs, inputs
        outputs = np.repeat(np.arange(self.n_out, dtype=np.int64), self.fan_in)
        return outputs, self.indices

    def to_mask(self, dtype: type = np.float32) -> np.ndarray:
        """Dense 0/1 matrix of shape ``(n_in, n_out)``, the reference implementation's layout."""
        mask: np.ndarray = np.zeros((self.n_in, self.n_out), dtype=dtype)
        if self.indptr is None:
            mask[:] = 1
        else:
            outputs, inputs = self.pairs()
            mask[inputs, outputs] = 1
        return mask

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Connectivity):
            return NotImplemented
        if (self.n_in, self.n_out, self.is_all_to_all) != (other.n_in, other.n_out, other.is_all_to_all):
            return False
        if self.is_all_to_all:
            return True
        return bool(
            np.array_equal(np.asarray(self.indptr), np.asarray(other.indptr))
            and np.array_equal(np.asarray(self.indices), np.asarray(other.indices))
        )

    def __hash__(self) -> int:  # frozen dataclass with custom __eq__: hash by identity
        return id(self)

    def describe(self) -> str:
        if self.is_all_to_all:
            return f"all-to-all {self.n_in}→{self.n_out}"
        k = self.uniform_fan_in
        kind = "blocks" if self.is_blocks else ("fan-in " + str(k) if k is not None else "irregular")
        return f"{kind} {self.n_in}→{self.n_out}, {self.n_connections} connections"


def _check_sizes(n_in: int, n_out: int) -> None:
    if int(n_in) <= 0 or int(n_out) <= 0:
        raise ValueError(f"layer sizes must be positive, got {n_in} inputs and {n_out} outputs")
