"""The cluster recipe of docs/sweeps.md, run the way a user runs it (issue 12, defect 8).

A real two-node Ray cluster on this machine: ``ray start --head`` and a second node joining it
with ``ray start --address``, each as its own process group, then ``dendritic sweep ...
--backend ray --address`` from a third process. Ray enables token authentication whenever a
token exists (any earlier local Ray run writes ``~/.ray/auth_token``), which is the situation
that used to refuse every node and the coordinator; HOME points at a private folder so the
token is the test's own. The cluster is stopped (its process groups killed) when the test ends.
Ray makes its nodes listen on the machine's own address, not loopback; nothing leaves it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402

pytest.importorskip("ray")

from dendritic.store import RunStore  # noqa: E402

RAY = Path(sys.executable).with_name("ray")
SWEEP = ["sweep", "main", "--dataset", "mnist", "--models", "dANN-R,vANN", "--dendrites", "1",
         "--somata", "32", "--trials", "1,2", "--epochs", "1", "--threads", "1", "--quiet"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen) -> None:
    """End a ``ray start --block`` and everything it started (one process group each)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers: raylet workers, agents
    process.wait(timeout=10)


def _wait_for(check, what: str, timeout: float, nodes: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if any(n.poll() is not None for n in nodes):
            break
        time.sleep(0.5)
    tails = " | ".join(log.read_text(errors="replace")[-500:] for log in logs if log.exists())
    pytest.fail(f"Ray cluster: {what} did not happen: {tails}")


@pytest.fixture
def cluster(tmp_path):
    """A token-authenticated two-node cluster; yields (GCS address, environment of a user)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    subprocess.run(
        [RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120
    )
    assert (home / ".ray" / "auth_token").is_file()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes: list[subprocess.Popen] = []
    logs = [tmp_path / "head.log", tmp_path / "node.log"]
    try:
        with open(logs[0], "w") as log:
            nodes.append(
                subprocess.Popen(
                    [
                        RAY,
                        "start",
                        "--head",
                        f"--port={port}",
                        "--num-cpus=1",
                        "--include-dashboard=false",
                        "--disable-usage-stats",
                        "--block",
                    ],  # fmt: skip
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

        def gcs_up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        _wait_for(gcs_up, "the head's GCS listening", 120, nodes, logs)
        # The documented recipe: the other nodes export RAY_AUTH_MODE=token before `ray start`.
        with open(logs[1], "w") as log:
            nodes.append(
                subprocess.Popen(
                    [
                        RAY,
                        "start",
                        f"--address={address}",
                        "--num-cpus=1",
                        "--disable-usage-stats",
                        "--block",
                    ],
                    env={**env, "RAY_AUTH_MODE": "token"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

        def two_nodes() -> bool:
            status = subprocess.run(
                [RAY, "status", "--address", address],
                env={**env, "RAY_AUTH_MODE": "token"},
                capture_output=True,
                text=True,
                timeout=60,
            )
            return "/2.0 CPU" in status.stdout

        _wait_for(two_nodes, "the second node joining", 120, nodes, logs)
        yield address, env
    finally:
        for node in reversed(nodes):
            _stop(node)
        # `ray start` records the cluster as this machine's current one; forget it again.
        current = Path("/tmp/ray/ray_current_cluster")
        with contextlib.suppress(OSError):
            if str(port) in current.read_text():
                current.unlink()


def _sweep(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dendritic.cli", *SWEEP, *args],
        env={**env, "DENDRITIC_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_a_sweep_runs_on_a_two_node_cluster_started_as_the_docs_say(cluster, tmp_path):
    address, env = cluster
    data = write_dataset(tmp_path / "data", "mnist", n_train=300, n_test=100)
    store = tmp_path / "runs.db"
    common = ("--backend", "ray", "--address", address, "--data-dir", str(data), "--store", str(store))

    # A coordinator with RAY_AUTH_MODE explicitly off is refused: one line naming what to set.
    refused = _sweep(tmp_path, {**env, "RAY_AUTH_MODE": "disabled"}, *common)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"dendritic: error: cannot connect to the Ray cluster at {address}")
    assert "export RAY_AUTH_MODE=token on every node" in last
    assert not store.exists() or len(RunStore(store, readonly=True)) == 0

    # As documented (the token is there, RAY_AUTH_MODE left to the tools): every run once.
    done = _sweep(tmp_path, env, *common)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "4 done, 0 failed" in done.stderr
    with RunStore(store, readonly=True) as runs:
        rows = runs.list_runs()
        assert len(rows) == 4 and {r["status"] for r in rows} == {"finished"}
        assert all(r["attempts"] == 1 for r in rows)
        assert {r["extra"]["worker_host"] for r in rows} == {socket.gethostname()}
        assert all(r["data"]["dataset"] == "mnist" for r in rows)

    # Resuming finds everything finished and runs nothing again.
    again = _sweep(tmp_path, env, *common)
    assert again.returncode == 0 and "0 done, 0 failed, 4 skipped" in again.stderr
