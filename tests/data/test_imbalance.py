"""The data report's warning about uneven classes (report.json "imbalance")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imgclf.data.split_report import IMBALANCE_WARN_RATIO, class_imbalance


def test_even_enough_classes_get_no_warning() -> None:
    result = class_imbalance({"cat": 300, "dog": 100, "eel": 200})  # exactly 3x: allowed
    assert result == {"largest": "cat", "smallest": "dog", "ratio": 3.0, "warning": None}
    assert IMBALANCE_WARN_RATIO == 3.0


def test_more_than_three_times_is_warned_naming_both_classes() -> None:
    result = class_imbalance({"cat": 1000, "dog": 990, "eel": 100})
    assert result["ratio"] == 10.0
    assert result["warning"].startswith("uneven classes: cat has 1000 images, 10x the 100 of eel")
    assert "train.class_weight: balanced" in result["warning"]


def test_split_reports_and_prints_the_warning(tmp_path: Path, image_folder: Callable[..., Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from imgclf.data import split
    from imgclf.params import DataParams, SplitParams

    image_folder(tmp_path / "raw", ["many"], per_class=20, size=16)
    image_folder(tmp_path / "raw", ["few"], per_class=5, size=16, seed=1)
    split.run(DataParams(image_size=16), SplitParams(train=0.6, val=0.2, test=0.2),
              tmp_path / "raw", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["imbalance"]["ratio"] == 4.0
    assert report["imbalance"]["smallest"] == "few"
    assert "split: warning: uneven classes: many has 20 images" in capsys.readouterr().err
