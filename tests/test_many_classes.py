"""The whole pipeline (`dvc repro`) on a generated 30-class dataset.

With more than five classes the metrics gain top-5 accuracy; the confusion matrix, the
gallery of mistakes and the W&B table of misclassified images must still be made.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLASSES = [f"class_{k:02d}" for k in range(30)]
PARAMS = {
    "data": {"image_size": 16},
    "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
    "model": {"arch": "small"},
    "train": {"epochs": 2, "batch_size": 16, "learning_rate": 0.003},
    "wandb": {"project": "imgclf-tests", "misclassified": 8},
}


@pytest.mark.slow
def test_dvc_repro_on_thirty_classes(tmp_path: Path, image_folder: Callable[..., Path],
                                     pipeline_repo: Callable[..., Path],
                                     git_environ: dict[str, str]) -> None:
    images = image_folder(tmp_path / "images", CLASSES, per_class=6, size=16)
    repo = pipeline_repo(tmp_path / "repo", images, PARAMS)
    (tmp_path / "wandb").mkdir()
    env = {**git_environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb")}
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"dvc repro failed:\n{proc.stdout}\n{proc.stderr}"

    test = json.loads((repo / "metrics/eval.json").read_text())["test"]
    split = json.loads((repo / "data/prepared/report.json").read_text())["counts"]["test"]
    assert list(test["per_class"]) == CLASSES
    assert {c: row["support"] for c, row in test["per_class"].items()} == split
    assert test["n"] == sum(split.values()) >= 30
    assert test["accuracy"] <= test["top5_accuracy"] <= 1
    assert 0 <= test["balanced_accuracy"] <= 1

    confusion = json.loads((repo / "metrics/plots/confusion.json").read_text())
    assert len(confusion) == test["n"]  # one row per test image
    assert {row["actual"] for row in confusion} == set(CLASSES)
    for picture in ("metrics/plots/confusion.png", "metrics/gallery/misclassified.png"):
        assert max(Image.open(repo / picture).size) <= 2500, picture

    # The audit ran in the chain (no embeddings from a small CNN: its quality checks only).
    audit = json.loads((repo / "metrics/data_audit/counts.json").read_text())
    assert audit["images"] == len(confusion) + sum(
        json.loads((repo / "data/prepared/meta.json").read_text())["counts"][s]
        for s in ("train", "val"))

    # The W&B table of misclassified test images names classes of the thirty.
    (table,) = (tmp_path / "wandb").rglob("misclassified*.table.json")
    rows = json.loads(table.read_text())["data"]
    assert 0 < len(rows) <= 8
    assert {row[1] for row in rows} | {row[2] for row in rows} <= set(CLASSES)
