"""Whether the process that started a run is still alive (pid and its start time, so a reused
pid is never mistaken for the original process), and the lease of runs of other hosts.

A run is owned by the process that started it. On its own host that process is alive or not
(its pid and start time say). On another host it cannot be checked: it holds the run while its
heartbeat is younger than :data:`LEASE_SECONDS`, and nobody may take the run over before.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime

#: Seconds a run of another host stays owned by its process after its last heartbeat (an epoch
#: logged, or a sweep coordinator's heartbeat every minute). ``replace=True`` (``--replace``)
#: takes over such a run only after this long (the span ``sweep --reclaim`` waits too).
LEASE_SECONDS = 300.0


def process_start_token(pid: int) -> str | None:
    """An id of the process's start (Linux: start time in clock ticks), to detect pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2 :].split()
    # Fields after "comm": state is index 0, starttime is field 22 overall, i.e. index 19 here.
    return fields[19] if len(fields) > 19 else None


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2 :].split()
    return rest[0] if rest else None


def _pid_alive_windows(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return kernel32.GetLastError() == 5  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def pid_alive(pid: int | None, start_token: str | None = None) -> bool:
    """Whether process ``pid`` on this host still runs (zombies and reused pids count as dead).

    Unknown cases answer True: a run must never be declared dead on a guess.
    """
    if pid is None or pid <= 0:
        return True
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        try:
            return _pid_alive_windows(pid)
        except Exception:  # cannot tell
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return True
    if _proc_state(pid) in ("Z", "X"):
        return False
    if start_token is not None:
        now = process_start_token(pid)
        if now is not None and now != start_token:
            return False  # the pid was reused by a newer process
    return True


def lease_age(heartbeat: datetime | None, now: datetime) -> float | None:
    """Seconds since a run's last heartbeat (None when it has none, e.g. a damaged stamp)."""
    if heartbeat is None:
        return None
    return max(0.0, (now - heartbeat).total_seconds())


def lease_expired(age: float | None, lease: float = LEASE_SECONDS) -> bool:
    """Whether a run of another host has been silent longer than its lease (unknown: no)."""
    return age is not None and age > lease
