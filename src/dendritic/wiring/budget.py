"""How much memory drawing a wiring takes, and a refusal before it is tried (issue 22, #7).

Every built-in receptive-field rule works in memory linear in the connections it draws (plus a
bounded working set), so its peak is known in closed form before anything is allocated. The
Python API (``DendriticLayer``, ``build_model``) checks it against the memory available, as the
CLI checks a whole model, and refuses a wiring that cannot fit with one line instead of being
killed by the operating system half-way.
"""

from __future__ import annotations

import logging
import os

from dendritic.errors import DendriticError
from dendritic.wiring import sampling
from dendritic.wiring.geometry import InputGeometry

__all__ = [
    "BYTES_PER_CANDIDATE",
    "BYTES_PER_CONNECTION",
    "WORKING_SET",
    "WiringTooLargeError",
    "available_memory",
    "check_wiring_fits",
    "estimate_wiring_bytes",
    "gigabytes",
]

log = logging.getLogger(__name__)

#: Peak bytes per drawn connection of the "local", "global" and "random" rules: the int64 table,
#: its sorted copy and the checks on it, the per-channel expansion (measured: 20–28 B).
BYTES_PER_CONNECTION = 32
#: The receptive-field samplers' bounded working set (candidate boxes, keys), whatever the size:
#: they handle 2**18 candidate sites at a time (at least one centre's box), ~80 bytes each.
WORKING_SET = 64 * 2**20
BYTES_PER_CANDIDATE = 96


class WiringTooLargeError(DendriticError, ValueError):
    """The requested wiring cannot be drawn in this machine's memory."""


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def gigabytes(n: int) -> str:
    """``n`` bytes as the CLI's guard writes them (``"2.5 GB"``)."""
    return f"{n / 1e9:.3g} GB" if n < 1e15 else f"{n / 1e9:.2e} GB"


def estimate_wiring_bytes(
    rule: str, geometry: InputGeometry, somata: int, dendrites: int, synapses: int
) -> int | None:
    """Peak bytes the built-in rule ``rule`` takes to draw ``somata · dendrites`` dendrites of
    ``synapses`` sites each (× channels), or None for a rule it does not know. Closed form:
    nothing is allocated."""
    n_out = int(somata) * int(dendrites)
    n_in = geometry.n_inputs
    fan_in = int(synapses) * geometry.channels
    connections = n_out * fan_in
    if rule in ("local", "global"):
        patches = [int(synapses)] + ([int(dendrites)] if rule == "global" else [])
        if max(patches) > geometry.sites:
            return None  # the rule refuses it without drawing
        box = max(sampling.box_size(geometry.grid, n) for n in patches)
        working = max(WORKING_SET, BYTES_PER_CANDIDATE * box)
        return BYTES_PER_CONNECTION * connections + 8 * n_out + working
    if rule == "random":
        if fan_in * 4 > n_in:  # the dense regime ranks a random key per (dendrite, input)
            return 16 * n_out * n_in + BYTES_PER_CONNECTION * connections
        return BYTES_PER_CONNECTION * connections
    if rule == "scattered":
        matrix = n_in * n_out  # numpy's choice() enumerates a large population it samples densely
        dense = 8 * matrix if matrix > 10_000 and connections > matrix // 50 else 0
        return 56 * connections + dense
    if rule == "all":
        return 0  # all-to-all wiring stores no indices
    return None


def check_wiring_fits(rule: str, geometry: InputGeometry, somata: int, dendrites: int, synapses: int) -> None:
    """Raise :class:`WiringTooLargeError` when drawing this wiring needs more memory than is
    available (no check where the rule or the available memory is unknown)."""
    needed = estimate_wiring_bytes(rule, geometry, somata, dendrites, synapses)
    if not needed:
        return
    available = available_memory()
    log.debug("wiring %r needs about %s (available: %s)", rule, needed, available)
    if available is not None and needed > available:
        connections = int(somata) * int(dendrites) * int(synapses) * geometry.channels
        raise WiringTooLargeError(
            f"the {rule!r} receptive-field wiring of S={somata}, D={dendrites}, {synapses} synapses "
            f"on a {geometry} has {connections:,} connections and needs about {gigabytes(needed)} "
            f"to draw; this machine has {gigabytes(available)} of memory available"
        )
