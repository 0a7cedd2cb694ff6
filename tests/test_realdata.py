"""The stages on a subset of the real photos (needs IMGCLF_DATA_MIRROR; CI sets it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imgclf.params import Params

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
PER_CLASS = 200


def test_stages_on_real_photos_beat_chance(tmp_path: Path, real_photos: Path) -> None:
    from imgclf.data import download, split
    from imgclf.evaluation import evaluate
    from imgclf.params import params_from_dict
    from imgclf.training import train

    p: Params = params_from_dict({
        "data": {"image_size": 64},
        "model": {"arch": "small"},
        "train": {"epochs": 12, "batch_size": 32, "early_stopping_patience": 0},
    })
    # The default source is the Kaggle set: taken from the mirror and verified file by file.
    download.run(p.data, tmp_path / "raw")
    classes = sorted(d.name for d in (tmp_path / "raw").iterdir())
    assert classes == ["cats", "dogs", "snakes"]
    assert sum(1 for _ in (tmp_path / "raw").rglob("*.jpg")) == 3000

    subset = tmp_path / "subset"
    for name in classes:
        (subset / name).mkdir(parents=True)
        for f in sorted((tmp_path / "raw" / name).iterdir())[:PER_CLASS]:
            shutil.copy(f, subset / name / f.name)
    split.run(p.data, p.split, subset, tmp_path / "prepared")
    train.run(p.model, p.train, tmp_path / "prepared", tmp_path / "model.keras",
              tmp_path / "live")
    evaluate.run(p.evaluate, tmp_path / "prepared", tmp_path / "model.keras",
                 tmp_path / "eval.json", tmp_path / "plots")
    test = json.loads((tmp_path / "eval.json").read_text())["test"]
    assert test["n"] == 3 * round(PER_CLASS * p.split.test)
    assert test["accuracy"] > 0.5, test  # chance is 1/3
    assert test["auroc"] > 0.7, test
