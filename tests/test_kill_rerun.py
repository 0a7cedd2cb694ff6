"""Kill ``dvc repro`` partway through each stage; the rerun finishes as if it never was.

Two throw-away repos of the pipeline on the same tiny generated images (16 px, the
small CNN, 1 epoch): ``dvc repro`` runs once uninterrupted in the first. In the second,
for each stage in turn, ``dvc repro`` starts in a process group of its own and the whole
group gets SIGKILL once that stage is at work (its log line, or its temporary output);
the next ``dvc repro`` resumes there. After each kill the stage is not recorded as done
in dvc.lock, and each of its outputs is either absent or the complete one. The final
rerun's outputs equal the uninterrupted run's: the same DVC hashes where a stage is
byte-deterministic; for the Keras model (its zip holds the save time) the same weights;
for the exported files (their bytes differ per save) the same scores, and each loads
and predicts the same probabilities as the uninterrupted run's file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PARAMS = {
    "data": {"image_size": 16},
    "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
    "audit": {"enabled": False},
    "model": {"arch": "small"},
    "train": {"epochs": 1, "batch_size": 8},
    "export": {"int8_samples": 10, "latency_runs": 2},
    "wandb": {"enabled": False},
}
# When each stage is at work: a line of its log (a regex), or a glob of the temporary
# names its outputs are written under before they are renamed into place (fsutil).
AT_WORK: dict[str, tuple[str | None, str | None]] = {
    "source": (r"> imgclf source", None),
    "download": (r"copying:", "data/.raw.*.tmp"),
    "pretrained": (r"> imgclf pretrained", None),
    "split": (r"split: decoding:", "data/.prepared.*.tmp"),
    "train": (r"train: small model", "models/.train-backup"),
    "evaluate": (None, "metrics/.*.tmp*"),  # no log line before it writes
    "export": (r"export: writing tflite_float16", "models/.export.*.tmp"),
}
# Outputs whose bytes differ from save to save: compared by what they hold instead.
MODEL, EXPORT = "models/model.keras", "models/export"
# export.json's size ratios come from the files' bytes, and the ONNX converter's output
# varies by tens of bytes from one conversion to the next (614,072 against 614,140 for
# the same weights), enough to move a 3-decimal ratio by 0.001: compared within this.
EXPORT_METRICS, SIZE_SLACK = "metrics/export.json", 0.002


class Repro:
    """``dvc repro`` in ``repo``, in a process group of its own, its output collected."""

    def __init__(self, repo: Path, env: dict[str, str]) -> None:
        # Unbuffered: each line as it is printed, not when a pipe's buffer fills.
        env = {**env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def kill_when(self, at_work: Callable[[str], bool], timeout: float = 300) -> str:
        """SIGKILL the whole group once ``at_work(output so far)``; the output."""
        deadline = time.monotonic() + timeout
        while not at_work(self.text()):
            assert self.proc.poll() is None, f"repro ended before the kill:\n{self.text()}"
            assert time.monotonic() < deadline, f"no sign of the stage:\n{self.text()}"
            time.sleep(0.005)
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join(10)
        return self.text()

    def finish(self) -> str:
        self.proc.wait(timeout=600)
        self.reader.join(10)
        assert self.proc.returncode == 0, self.text()
        return self.text()


def stage_at_work(repo: Path, stage: str) -> Callable[[str], bool]:
    """Whether ``stage`` is at work, from the output of a repro started now in ``repo``
    (temporary names left by an earlier kill do not count)."""
    line, glob = AT_WORK[stage]
    before = set(repo.glob(glob)) if glob else set()

    def at_work(text: str) -> bool:
        _, running, since = text.rpartition(f"Running stage '{stage}'")
        return bool(running) and ((line is not None and re.search(line, since) is not None)
                                  or (glob is not None and bool(set(repo.glob(glob)) - before)))
    return at_work


def digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files' relative paths and bytes."""
    h = hashlib.sha256()
    for file in sorted(p for p in [path, *path.rglob("*")] if p.is_file()):
        h.update(str(file.relative_to(path)).encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def lock(repo: Path) -> dict:
    path = repo / "dvc.lock"
    return yaml.safe_load(path.read_text())["stages"] if path.exists() else {}


def outs(repo: Path) -> dict[str, dict[str, str]]:
    """``{stage: {out path: DVC hash}}`` of ``repo``'s dvc.lock."""
    return {stage: {o["path"]: o["md5"] for o in entry.get("outs", [])}
            for stage, entry in lock(repo).items()}


def test_kill_each_stage_then_rerun(tmp_path: Path, image_folder: Callable[..., Path],
                                    pipeline_repo: Callable[..., Path],
                                    git_environ: dict[str, str]) -> None:
    images = image_folder(tmp_path / "images", ["cat", "dog", "eel"], per_class=10)
    whole = pipeline_repo(tmp_path / "whole", images, PARAMS)
    killed = pipeline_repo(tmp_path / "killed", images, PARAMS)
    Repro(whole, git_environ).finish()
    expected = outs(whole)

    for stage in AT_WORK:
        text = Repro(killed, git_environ).kill_when(stage_at_work(killed, stage))
        assert f"Running stage '{stage}'" in text
        assert stage not in lock(killed), f"{stage} recorded as done though killed:\n{text}"
        for path in expected[stage]:  # absent, or complete
            if (killed / path).exists() and path not in (MODEL, EXPORT):
                assert digest(killed / path) == digest(whole / path), f"{path} half-written"

    Repro(killed, git_environ).finish()
    got = outs(killed)
    assert got.keys() == expected.keys()
    for stage, paths in expected.items():
        for path, value in paths.items():
            if path == EXPORT_METRICS:
                assert_same_export_metrics(whole / path, killed / path)
            elif path not in (MODEL, EXPORT):
                assert got[stage][path] == value, f"{path} of {stage} differs after the kills"
    assert_same_weights(whole / MODEL, killed / MODEL)
    assert_same_exports(whole, killed)
    assert json.loads(subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], cwd=killed, env=git_environ,
        capture_output=True, text=True, check=True).stdout) == {"source": ["always changed"]}


def assert_same_export_metrics(a: Path, b: Path) -> None:
    """The same export.json, but for each format's size ratio, within SIZE_SLACK."""
    rows_a, rows_b = json.loads(a.read_text()), json.loads(b.read_text())
    for fmt, row in rows_a.items():
        if isinstance(row, dict) and "size_ratio" in row:
            assert abs(row.pop("size_ratio") - rows_b[fmt].pop("size_ratio")) <= SIZE_SLACK, fmt
    assert rows_a == rows_b, f"{a.name} differs after the kills"


def assert_same_weights(a: Path, b: Path) -> None:
    from imgclf.models.saving import load_model

    (model_a, info_a), (model_b, info_b) = load_model(a), load_model(b)
    assert info_a == info_b
    for wa, wb in zip(model_a.get_weights(), model_b.get_weights(), strict=True):
        assert wa.tobytes() == wb.tobytes()


def assert_same_exports(whole: Path, killed: Path) -> None:
    """Scores equal at their committed precision; every file loads and predicts alike."""
    from imgclf.data.shards import read_split
    from imgclf.export.formats import FORMATS
    from imgclf.inference.runtimes import load_runtime

    assert_same_export_metrics(whole / EXPORT_METRICS, killed / EXPORT_METRICS)
    images, _ = read_split(whole / "data/prepared", "test")
    pixels = images.astype(np.float32)
    for name in yaml.safe_load((whole / "params.yaml").read_text())["export"]["formats"]:
        file = FORMATS[name].file
        probs = [load_runtime(repo / EXPORT / file).predict_on_batch(pixels)
                 for repo in (whole, killed)]
        np.testing.assert_allclose(probs[0], probs[1], atol=1e-6, err_msg=name)
