"""What the resume tests of tests/training share: a training killed and run again."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# cmd(name) -> the `imgclf train` command whose --model and --live go under name/.
Command = Callable[[str], list[str]]


def final_digest(output: str) -> str:
    """The sha256 of the final weights that ``imgclf train`` prints (exactly once)."""
    found = re.findall(r"final weights sha256 ([0-9a-f]{64})", output)
    assert len(found) == 1, output
    return found[0]


def killed_and_resumed(cmd: Command, cwd: Path, start_s: float = 120) -> tuple[str, str]:
    """``(output of an uninterrupted run, output of a run killed and run again)``.

    The second run is SIGKILLed once its learning curve holds three epochs (so a backup
    exists), then started again; nothing it left may look complete.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = subprocess.run(cmd("straight"), cwd=cwd, capture_output=True, text=True, env=env)
    assert straight.returncode == 0, straight.stdout + straight.stderr
    first = subprocess.Popen(cmd("resumed"), cwd=cwd, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    curve = cwd / "resumed/live/plots/metrics/train/loss.tsv"
    deadline = time.monotonic() + start_s
    while not (curve.exists() and len(curve.read_text().splitlines()) > 3):
        assert time.monotonic() < deadline and first.poll() is None, "training never got going"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (cwd / "resumed/model.keras").exists()  # nothing looks complete
    second = subprocess.run(cmd("resumed"), cwd=cwd, capture_output=True, text=True, env=env)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    return straight.stdout + straight.stderr, out


@pytest.fixture
def kill_and_resume() -> Callable[..., tuple[str, str]]:
    return killed_and_resumed


@pytest.fixture
def weights_digest() -> Callable[[str], str]:
    return final_digest


def open_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (for a multi-worker run's TF_CONFIG)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:  # all bound at once, so the n ports differ
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def free_ports() -> Callable[[int], list[int]]:
    return open_ports
