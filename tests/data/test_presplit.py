"""Datasets that come already split (train/ test/ [val/] folders of class folders)."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from imgclf.data.layout import given_splits
from imgclf.errors import UserError
from imgclf.params import DataParams, SplitParams

CLASSES = ["a", "b", "c"]


def _folders(root: Path, *names: str) -> Path:
    for name in names:
        (root / name / "cls").mkdir(parents=True)
    return root


@pytest.mark.parametrize("names,expected", [
    (("train", "test"), {"train": "train", "test": "test"}),
    (("Training", "VALID", "testing"), {"train": "Training", "val": "VALID", "test": "testing"}),
    (("TRAIN", "Validation", "Test"), {"train": "TRAIN", "val": "Validation", "test": "Test"}),
])
def test_split_folder_names_are_recognised_in_any_case(tmp_path: Path, names: tuple[str, ...],
                                                       expected: dict[str, str]) -> None:
    assert given_splits(_folders(tmp_path, *names)) == expected


@pytest.mark.parametrize("names", [("cats", "dogs"), ("train", "val"), ("train", "test", "dogs")])
def test_anything_else_is_a_plain_folder_of_classes(tmp_path: Path, names: tuple[str, ...]) -> None:
    assert given_splits(_folders(tmp_path, *names)) is None


def test_two_folders_for_one_split_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="folders val and valid are both the val split"):
        given_splits(_folders(tmp_path, "train", "val", "valid", "test"))


def _rows(prepared: Path) -> list[dict[str, str]]:
    with open(prepared / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _split(raw: Path, out: Path, val: float = 0.2) -> dict:
    from imgclf.data import split

    split.run(DataParams(image_size=16), SplitParams(train=0.6, val=val, test=0.2, seed=3),
              raw, out)
    return json.loads((out / "report.json").read_text())


def test_the_given_test_split_is_kept_and_val_carved_from_train(
        tmp_path: Path, image_folder: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    image_folder(tmp_path / "raw" / "Train", CLASSES, per_class=10, size=16)
    image_folder(tmp_path / "raw" / "test", CLASSES, per_class=4, size=16, seed=1)
    report = _split(tmp_path / "raw", tmp_path / "out", val=0.2)
    rows = _rows(tmp_path / "out")
    by_split = Counter((r["split"], r["path"].split("/")[0]) for r in rows)
    # Every test image is the dataset's, and only those; val is 2 of each class's 10.
    assert by_split == {("test", "test"): 12, ("val", "Train"): 6, ("train", "Train"): 24}
    assert Counter(r["label"] for r in rows if r["split"] == "val") == {c: 2 for c in CLASSES}
    assert report["given_splits"]["from"] == {
        "train": "folder Train", "val": "carved from folder Train (split.val 0.2 of it, "
        "stratified)", "test": "folder test"}
    assert report["given_splits"]["duplicates_across_splits"] == []
    assert "kept the dataset's own split (Train, test)" in capsys.readouterr().err


def test_a_given_val_folder_is_used_and_cross_split_copies_are_reported(
        tmp_path: Path, image_folder: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    image_folder(raw / "train", CLASSES, per_class=6, size=16)
    image_folder(raw / "valid", CLASSES, per_class=3, size=16, seed=1)
    image_folder(raw / "test", CLASSES, per_class=3, size=16, seed=2)
    shutil.copy(raw / "train/a/a_000.png", raw / "test/a/leaked.png")  # the dataset's leak
    report = _split(raw, tmp_path / "out")
    rows = {r["path"]: r["split"] for r in _rows(tmp_path / "out")}
    assert {p for p, s in rows.items() if s == "val"} == {
        f"valid/{c}/{c}_{i:03d}.png" for c in CLASSES for i in range(3)}
    # Neither copy was moved or dropped.
    assert rows["train/a/a_000.png"] == "train" and rows["test/a/leaked.png"] == "test"
    assert report["given_splits"]["from"]["val"] == "folder valid"
    assert report["given_splits"]["duplicates_across_splits"] == [
        ["test/a/leaked.png", "train/a/a_000.png"]]
    assert "1 image(s) appear in more than one of its splits" in capsys.readouterr().err


def test_download_copies_a_split_dataset_as_it_is(tmp_path: Path,
                                                  image_folder: Callable[..., Path]) -> None:
    from imgclf.data import download

    src = tmp_path / "src"
    image_folder(src / "training", ["a", "b"], per_class=2, size=8)
    image_folder(src / "testing", ["a", "b"], per_class=1, size=8, seed=1)
    download.run(DataParams(source=str(src)), tmp_path / "raw")
    copied = sorted(p.relative_to(tmp_path / "raw").as_posix()
                    for p in (tmp_path / "raw").rglob("*") if p.is_file())
    assert copied == sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
    assert len(copied) == 6
