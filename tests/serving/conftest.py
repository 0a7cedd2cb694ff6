"""``imgclf serve`` started as a real process on a loopback port, and images to send it.

The server serves the session's ``tiny_model`` (16 px; classes blue, green, red) with a
report folder holding a small eval.json and a confusion-matrix PNG, but no reliability
diagram or gallery, so the page must say those are missing.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
# Small limits, so the tests can exceed them cheaply; a wide batch window, so that
# requests sent together do share model calls.
MAX_UPLOAD_MB = 0.25
MAX_FILES = 8
START_TIMEOUT_S = 180


def photo(colour: str, seed: int = 0, fmt: str = "PNG", size: int = 24) -> bytes:
    """An encoded image around the class ``colour``, as the tiny model was trained on."""
    rng = np.random.default_rng(seed)
    pixels = np.array(COLOURS[colour], np.int16) + rng.integers(-40, 40, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, fmt)
    return buf.getvalue()


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    max_files: int = MAX_FILES
    max_upload_bytes: int = int(MAX_UPLOAD_MB * 1024 * 1024)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_server(model: Path, workdir: Path, *args: str,
                 env: dict[str, str] | None = None) -> Server:
    """Start ``imgclf serve --port 0`` and wait until /healthz answers."""
    log = workdir / "server.log"
    cmd = [sys.executable, "-m", "imgclf", "serve", "--model", str(model), "--port", "0",
           "--tta", "none", *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    server = Server("", proc, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"imgclf serve exited with {proc.returncode}:\n{server.output()}")
        found = re.search(r" at (http://\S+/) ;", server.output())
        if found:
            server.url = found[1]
            try:
                if httpx.get(server.url + "healthz", timeout=5).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"imgclf serve did not answer in {START_TIMEOUT_S} s:\n"
                         f"{server.output()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(name="photo", scope="session")
def photo_fixture() -> Callable[..., bytes]:
    """The ``photo`` builder: ``photo(colour, seed=0, fmt="PNG", size=24) -> bytes``."""
    return photo


@pytest.fixture(scope="session")
def serve_helpers() -> ModuleType:
    """This module, for tests that start a server of their own (start_server, stop_server)."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """metrics/eval.json (test split) and metrics/plots/confusion.png, nothing else."""
    root = tmp_path_factory.mktemp("serve-report")
    per_class = {name: {"precision": 0.9, "recall": 0.8, "f1": 0.85, "auroc": 0.97,
                        "support": 10} for name in COLOURS}
    test = {"accuracy": 0.933333, "precision": 0.9, "recall": 0.8, "f1": 0.85, "auroc": 0.97,
            "loss": 0.21, "n": 30, "ece": 0.0425, "per_class": per_class}
    (root / "metrics" / "plots").mkdir(parents=True)
    (root / "metrics" / "eval.json").write_text(json.dumps({"test": test}))
    Image.new("RGB", (120, 90), (30, 90, 160)).save(root / "metrics" / "plots" / "confusion.png")
    return root


@pytest.fixture(scope="session")
def server(tiny_model: Path, report_dir: Path) -> Iterator[Server]:
    """The server without a token, with small limits and a 30 ms batch window.

    The file limit comes from the environment; the upload limit from the command line,
    which wins over the environment's (the limit tests fail otherwise).
    """
    s = start_server(tiny_model, report_dir, "--max-upload-mb", str(MAX_UPLOAD_MB),
                     "--batch-window-ms", "30",
                     env={"IMGCLF_SERVE_TOKEN": "", "IMGCLF_SERVE_MAX_FILES": str(MAX_FILES),
                          "IMGCLF_SERVE_MAX_UPLOAD_MB": "100"})
    yield s
    stop_server(s)
