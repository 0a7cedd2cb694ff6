"""Child processes of the benchmark: their environment, output, wall time and peak memory."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.framework import BenchError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_MIRROR = SHARED / "data" / "animals"
DEFAULT_KERAS_HOME = SHARED / "weights" / "keras"

_T0 = time.perf_counter()


def elapsed() -> float:
    """Seconds since the benchmark started."""
    return time.perf_counter() - _T0


def log(message: str) -> None:
    """Progress on stderr, with the seconds since the start; stdout is for the results."""
    print(f"[bench {elapsed():6.0f}s] {message}", file=sys.stderr, flush=True)


def mirror_dir() -> Path:
    """The folder of the real photos (cats/, dogs/, snakes/)."""
    path = Path(os.environ.get("IMGCLF_DATA_MIRROR") or DEFAULT_MIRROR)
    if not path.is_dir():
        raise SystemExit(f"bench: {path}: not a folder; set IMGCLF_DATA_MIRROR to the folder "
                         "of the animals photos (cats/, dogs/, snakes/)")
    return path


def child_env() -> dict[str, str]:
    """The environment of the stages and scripts run as child processes.

    The venv's bin goes first on PATH (dvc.yaml calls ``imgclf``); the mirror and
    KERAS_HOME are passed on; W&B is off unless WANDB_MODE says otherwise, because it
    is the pipeline that is measured, not the tracker.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["IMGCLF_DATA_MIRROR"] = str(mirror_dir())
    if "KERAS_HOME" not in env and DEFAULT_KERAS_HOME.is_dir():
        env["KERAS_HOME"] = str(DEFAULT_KERAS_HOME)
    env.setdefault("WANDB_MODE", "disabled")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost")
    return env



@dataclass
class ChildRun:
    """What a finished child process did: wall time, output and (if polled) peak memory.

    Memory is polled rather than read from getrusage: a child's ``ru_maxrss`` includes
    the RSS it had between fork and exec, i.e. that of this process with TensorFlow.
    """

    seconds: float
    output: str
    peak_rss_mb: float | None = None  # summed over the process tree, at the worst poll
    peak_private_mb: float | None = None  # the same without shared and file-backed pages


def _tree_memory(proc: Any) -> tuple[int, int]:
    """(RSS, RSS minus shared pages) summed over ``proc`` and its descendants, in bytes."""
    import psutil

    rss = private = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            m = p.memory_info()
            rss, private = rss + m.rss, private + m.rss - m.shared
    return rss, private


def run_child(cmd: Sequence[str], cwd: Path, *, poll_s: float | None = None,
              what: str = "") -> ChildRun:
    """Run ``cmd``; raise BenchError with its output's tail when it fails.

    With ``poll_s``, the process tree's memory is sampled every ``poll_s`` seconds.
    """
    peaks = [0, 0]
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=child_env(), stdout=out,
                                stderr=subprocess.STDOUT, text=True)
        if poll_s:
            import psutil

            watched = psutil.Process(proc.pid)
            while proc.poll() is None:
                peaks = [max(a, b) for a, b in zip(peaks, _tree_memory(watched), strict=True)]
                time.sleep(poll_s)
        proc.wait()
        seconds = time.perf_counter() - t0
        out.seek(0)
        output = out.read()
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise BenchError(f"{what or cmd[0]} failed (exit {proc.returncode}):\n{tail}")
    if not poll_s:
        return ChildRun(seconds, output)
    mb = 1024 * 1024
    return ChildRun(seconds, output, peaks[0] / mb, peaks[1] / mb)


def imgclf_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgclf", *args]


def dvc_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def last_json(output: str) -> dict[str, Any]:
    """The last line of ``output`` that is a JSON object."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"no JSON line in the output:\n{output[-2000:]}")


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send what in-process stages print to stderr, keeping stdout for the results."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
