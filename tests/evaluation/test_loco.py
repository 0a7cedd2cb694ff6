"""The ood stage's command alone: leave-one-class-out on embeddings the test writes in
the features stage's format, and the generated images on the session's tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgclf.evaluation import loco
from imgclf.params import OodParams

CLASSES = ["red", "green", "blue"]  # the tiny model's, in its order


def write_embeddings(folder: Path, per_class: dict[str, int], d: int = 16,
                     seed: int = 0) -> Path:
    """``folder``: ``S-embed.npy`` (N, d) float16 and ``S-labels.npy`` (N,) int32 for
    train, val and test, three separated clusters, and a ``features.json`` naming them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (len(CLASSES), d))
    folder.mkdir(parents=True)
    for split, n in per_class.items():
        labels = np.repeat(np.arange(len(CLASSES)), n).astype(np.int32)
        embed = centres[labels] + rng.normal(0, 1, (len(labels), d))
        np.save(folder / f"{split}-embed.npy", embed.astype(np.float16))
        np.save(folder / f"{split}-labels.npy", labels)
    meta = {"counts": {s: n * len(CLASSES) for s, n in per_class.items()},
            "embed": {"splits": list(per_class), "views": "image and mirror, mean"}}
    (folder / "features.json").write_text(json.dumps(meta))
    return folder


def test_each_class_left_out_in_turn_is_told_from_the_others(tmp_path: Path) -> None:
    folder = write_embeddings(tmp_path / "features", {"train": 40, "val": 10, "test": 15})
    got = loco.loco_of_features(folder, CLASSES, OodParams())
    assert got["classes"] == CLASSES
    for row in got["per_class"].values():
        assert set(row) == {"msp", "energy", "mahalanobis", "mahalanobis_min", "knn"}
        assert row["knn"]["auroc"] > 0.9 and row["mahalanobis_min"]["auroc"] > 0.9
    assert got["mean"]["knn"]["fpr95"] < 0.5


def test_at_most_loco_classes_are_left_out_and_no_embeddings_is_said(tmp_path: Path) -> None:
    picked = loco.left_out_classes(30, 10, seed=0)
    assert len(picked) == 10 == len(set(picked)) and picked == sorted(picked)
    assert picked == loco.left_out_classes(30, 10, seed=0) != loco.left_out_classes(30, 10, 1)
    (tmp_path / "NONE.txt").write_text("no features: model.arch: small\n")
    assert "no embeddings" in loco.loco_of_features(tmp_path, CLASSES, OodParams())["skipped"]


@pytest.mark.parametrize("embeddings", [True, False])
def test_the_stage_writes_every_figure(tiny_prepared: Path, tiny_model: Path, tmp_path: Path,
                                       embeddings: bool) -> None:
    features = tmp_path / "features"
    if embeddings:
        write_embeddings(features, {"train": 20, "val": 5, "test": 6})
    else:
        features.mkdir()
    metrics = tmp_path / "ood.json"
    loco.run(OodParams(generated=6), features, tiny_prepared, tiny_model, metrics)
    got = json.loads(metrics.read_text())
    assert got["method"] == OodParams().method
    assert got["keep"]["n"] == 18 and 0 <= got["keep"]["kept_share"] <= 1
    assert got["generated"]["kinds"] == ["noise", "flat", "text", "crops"]
    means = got["generated"]["mean"]
    assert set(means) == {"msp", "energy", "mahalanobis", "mahalanobis_min", "knn", "shipped"}
    assert means["shipped"] == means[got["method"]]  # the model's output is that score
    assert max(m["auroc"] for m in means.values()) > 0.9  # noise and text are far from blobs
    assert 0 <= got["generated"]["flagged"] <= 1
    assert ("per_class" in got["loco"]) == embeddings
