"""Open an HTML page in headless Chromium (Debian's ``chromium``) as the report tests do."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def render(page: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """(the browser's run: stdout is the DOM after load, its console lines)."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": profile},
        )
    return proc, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def assert_renders(page: Path, images: int) -> None:
    """The report opens in Chromium with ``images`` images, all decoded, and no console line but
    its own "loaded" message (skips the test without a browser)."""
    import pytest

    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    proc, console = render(page)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f'data-images="{images}"' in proc.stdout and f'data-images-decoded="{images}"' in proc.stdout
    assert not [line for line in console if "dendritic report loaded" not in line]
