"""Whether the process that started a run is still alive (pid and its start time, so a reused
pid is never mistaken for the original process)."""

from __future__ import annotations

import os
import sys


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
