"""Tests of the split stage's data report (imgclf.data.split_report)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data import split
from imgclf.data.images import load_image
from imgclf.data.shards import read_meta
from imgclf.data.split_report import (
    LARGEST_GROUPS,
    WARN_FRACTION,
    largest_groups,
    set_aside_warnings,
    split_report,
)
from imgclf.data.split_report_plots import class_balance_figure, image_sizes_figure, sample_images
from imgclf.params import DataParams, SplitParams


def row(path: str, label: str, split: str) -> dict[str, str]:
    return {"path": path, "label": label, "split": split, "sha256": "0" * 64}


ROWS = [
    row("cat/1.jpg", "cat", "train"),
    row("cat/2.jpg", "cat", "train"),
    row("cat/3.jpg", "cat", "val"),
    row("cat/4.jpg", "cat", "test"),
    row("dog/1.jpg", "dog", "test"),
    row("dog/2.jpg", "dog", "train"),
    row("dog/3.jpg", "dog", "val"),
    row("dog/4.jpg", "dog", "train"),
    row("dog/5.jpg", "dog", "train"),
]
PATHS = [r["path"] for r in ROWS]


def report(**overrides: object) -> dict:
    args: dict = {"class_names": ["cat", "dog"], "rows": ROWS, "skipped": [],
                  "groups": np.arange(len(PATHS)), "paths": PATHS}
    args.update(overrides)
    return split_report(**args)


def test_counts_per_split_and_class() -> None:
    r = report()
    assert r["images"] == 9
    assert r["classes"] == ["cat", "dog"]
    assert r["counts"] == {
        "train": {"cat": 2, "dog": 3},
        "val": {"cat": 1, "dog": 1},
        "test": {"cat": 1, "dog": 1},
    }
    assert list(r["counts"]) == ["train", "val", "test"]


def test_class_missing_from_a_split_counts_zero() -> None:
    rows = [row("a/1", "a", "train"), row("a/2", "a", "test"), row("b/1", "b", "train")]
    r = split_report(["a", "b"], rows, [], np.arange(3), [x["path"] for x in rows])
    assert r["counts"]["test"] == {"a": 1, "b": 0}
    assert r["counts"]["train"] == {"a": 1, "b": 1}


def test_duplicate_groups_lists_only_groups_with_several_members() -> None:
    groups = np.array([0, 1, 0, 2, 3, 4, 3, 3, 5])
    r = report(groups=groups)
    assert sorted(map(sorted, r["duplicate_groups"])) == [
        ["cat/1.jpg", "cat/3.jpg"],
        ["dog/1.jpg", "dog/3.jpg", "dog/4.jpg"],
    ]


def test_no_duplicates() -> None:
    assert report()["duplicate_groups"] == []


def test_duplicate_groups_may_include_files_not_in_the_manifest() -> None:
    """Files dropped for a label conflict still show in their group."""
    paths = [*PATHS, "cat/x.jpg", "dog/x.jpg"]
    groups = np.array([*range(len(PATHS)), 99, 99])
    r = report(paths=paths, groups=groups)
    assert r["duplicate_groups"] == [["cat/x.jpg", "dog/x.jpg"]]
    assert r["images"] == len(ROWS)


def test_skipped_sorted_and_counted_by_reason() -> None:
    skipped = [
        {"path": "dog/z.jpg", "reason": "empty file"},
        {"path": "cat/a.jpg", "reason": "cannot decode (image file is truncated)"},
        {"path": "cat/b.jpg", "reason": "cannot decode (broken data stream)"},
        {"path": ".DS_Store", "reason": "hidden"},
    ]
    r = report(skipped=skipped)
    assert [s["path"] for s in r["skipped"]] == [".DS_Store", "cat/a.jpg", "cat/b.jpg",
                                                 "dog/z.jpg"]
    assert r["skipped"][1]["reason"] == "cannot decode (image file is truncated)"
    assert r["skipped_by_reason"] == {"empty file": 1, "cannot decode": 2, "hidden": 1}


def test_report_is_json_ready() -> None:
    r = report(groups=np.array([0, 0, 1, 2, 3, 4, 5, 6, 7]),
               skipped=[{"path": "x", "reason": "hidden"}])
    assert json.loads(json.dumps(r)) == r


# --- original image sizes ------------------------------------------------------------------

SIZES = {"cat/1.jpg": (100, 50), "cat/2.jpg": (100, 50), "cat/3.jpg": (40, 40),
         "cat/4.jpg": (30, 60), "dog/1.jpg": (200, 100), "dog/2.jpg": (64, 64),
         "dog/3.jpg": (64, 64), "dog/4.jpg": (64, 64), "dog/5.jpg": (120, 40)}


def test_no_sizes_no_size_section() -> None:
    assert "image_sizes" not in report()


def test_per_class_totals() -> None:
    assert report()["per_class"] == {"cat": 4, "dog": 5}


def test_size_statistics_orientation_and_enlarged_images() -> None:
    s = report(sizes=SIZES, image_size=50)["image_sizes"]
    assert s["width"] == {"min": 30, "median": 64.0, "mean": 86.9, "max": 200}
    assert s["height"]["min"] == 40 and s["height"]["max"] == 100
    assert s["aspect_ratio"]["min"] == 0.5 and s["aspect_ratio"]["max"] == 3.0
    assert s["orientation"] == {"landscape": 4, "square": 4, "portrait": 1}
    assert s["resized_to"] == 50
    assert s["smaller_than_target"] == 3  # 40x40, 30x60 and 120x40 have a side below 50
    assert s["per_class"]["cat"]["width"] == {"min": 30, "median": 70.0, "mean": 67.5,
                                              "max": 100}
    assert s["per_class"]["dog"]["aspect_ratio"]["max"] == 3.0


def test_aspect_ratio_histogram_bins() -> None:
    hist = report(sizes=SIZES)["image_sizes"]["aspect_ratio_histogram"]
    assert [(b["from"], b["to"]) for b in hist] == [
        (0.0, 0.5), (0.5, 0.75), (0.75, 0.95), (0.95, 1.05), (1.05, 1.33), (1.33, 2.0),
        (2.0, None)]
    # 30x60 = 0.5 starts the second bin; 100x50 and 200x100 = 2.0 start the last.
    assert [b["count"] for b in hist] == [0, 1, 0, 4, 0, 0, 4]


def test_distinct_sizes_per_class_most_common_first() -> None:
    sizes = report(sizes=SIZES)["image_sizes"]["sizes"]
    assert sizes[:3] == [{"class": "cat", "width": 100, "height": 50, "count": 2},
                         {"class": "cat", "width": 30, "height": 60, "count": 1},
                         {"class": "cat", "width": 40, "height": 40, "count": 1}]
    assert sizes[3] == {"class": "dog", "width": 64, "height": 64, "count": 3}
    assert sum(r["count"] for r in sizes) == len(ROWS)


def test_report_with_sizes_is_json_ready() -> None:
    r = report(sizes=SIZES, image_size=64)
    assert json.loads(json.dumps(r, allow_nan=False)) == r


# --- the split stage writes the report and its pictures ---------------------------------------


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory,
             image_folder: Callable[..., Path]) -> tuple[Path, Path, Path]:
    """A split of 3 small classes with a wide image, an EXIF-rotated one and a broken file."""
    root = tmp_path_factory.mktemp("reported")
    raw = image_folder(root / "raw", ["ant", "bee", "cow"], per_class=8, size=20)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 60, 3), np.uint8)).save(raw / "ant" / "wide.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated: 30 wide, 50 high
    Image.fromarray(rng.integers(0, 255, (30, 50, 3), np.uint8)).save(raw / "bee" / "turned.jpg",
                                                                      exif=exif)
    (raw / "cow" / "broken.png").write_bytes(b"\x89PNG nope")
    split.run(DataParams(image_size=16), SplitParams(train=0.5, val=0.25, test=0.25, seed=3),
              raw, root / "prepared", report_dir=root / "reports")
    return raw, root / "prepared", root / "reports"


def test_split_report_has_the_original_sizes(reported: tuple[Path, Path, Path]) -> None:
    _, prepared, _ = reported
    r = json.loads((prepared / "report.json").read_text())
    s = r["image_sizes"]
    assert {"class": "ant", "width": 60, "height": 20, "count": 1} in s["sizes"]
    assert {"class": "bee", "width": 30, "height": 50, "count": 1} in s["sizes"]
    assert {"class": "cow", "width": 20, "height": 20, "count": 8} in s["sizes"]
    assert s["resized_to"] == 16 and s["smaller_than_target"] == 0
    assert s["orientation"] == {"landscape": 1, "square": 24, "portrait": 1}
    assert r["per_class"] == {"ant": 9, "bee": 9, "cow": 8}
    assert r["skipped"] == [{"path": "cow/broken.png", "reason": "not an image Pillow can read"}]


def test_split_draws_the_report_pictures(reported: tuple[Path, Path, Path]) -> None:
    _, _, reports = reported
    names = sorted(p.relative_to(reports).as_posix() for p in reports.rglob("*") if p.is_file())
    assert names == ["class_balance.png", "image_sizes.png", "samples/ant.png",
                     "samples/bee.png", "samples/cow.png"]
    for name in names:
        with Image.open(reports / name) as im:
            assert im.format == "PNG" and im.width >= 300 and im.height >= 150
    assert not [p for p in reports.parent.iterdir() if p.name.startswith(".reports")]


def test_samples_are_the_shard_images_of_each_class(reported: tuple[Path, Path, Path]) -> None:
    raw, prepared, _ = reported
    with open(prepared / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    samples = sample_images(prepared, rows, per_class=3)
    meta = read_meta(prepared)
    assert sorted(samples) == ["ant", "bee", "cow"]
    for name, picks in samples.items():
        assert len(picks) == 3
        for image, caption in picks:
            file, split_name = caption.rsplit(" (", 1)
            assert split_name.rstrip(")") in {"train", "val", "test"}
            # The stored image, decoded as training decodes it: load_image's pixels.
            assert meta.encoding == "source"
            np.testing.assert_array_equal(image, load_image(raw / name / file, 16))


def test_report_figures_build_from_the_report_alone(reported: tuple[Path, Path, Path]) -> None:
    _, prepared, _ = reported
    r = json.loads((prepared / "report.json").read_text())
    fig = class_balance_figure(r)
    assert "26 in all" in fig.axes[0].get_title()
    assert len(image_sizes_figure(r).axes) == 2
    assert len(image_sizes_figure({"classes": ["a"], "images": 0}).axes) == 2  # an old report


# --- every input accounted for, said out loud ---------------------------------------------


def test_largest_groups_biggest_first_with_their_classes() -> None:
    groups = np.array([0, 1, 1, 0, 2, 2, 2, 3, 4])
    labels = ["cat"] * 4 + ["dog"] * 5
    r = report(groups=groups, labels=labels)
    assert r["largest_groups"] == [
        {"size": 3, "classes": {"dog": 3}, "first": "dog/1.jpg"},
        {"size": 2, "classes": {"cat": 2}, "first": "cat/1.jpg"},
        {"size": 2, "classes": {"cat": 2}, "first": "cat/2.jpg"},
    ]


def test_largest_groups_are_capped_and_name_mixed_classes() -> None:
    paths = [f"{'cat' if i % 2 else 'dog'}/{i}.jpg" for i in range(60)]
    groups = np.arange(60) // 2  # 30 pairs, each a cat and a dog
    groups[:6] = 0  # one group of 6
    r = largest_groups(groups, paths, [p.split("/")[0] for p in paths])
    assert len(r) == LARGEST_GROUPS
    assert r[0] == {"size": 6, "classes": {"dog": 3, "cat": 3}, "first": "dog/0.jpg"}
    assert all(g["size"] == 2 for g in r[1:])


def test_library_warnings_are_the_files_own_lines() -> None:
    said = [{"path": "dog/2.jpg", "warning": "Corrupt EXIF data"},
            {"path": "cat/1.jpg", "warning": "Truncated File Read"}]
    r = report(warnings=said)
    assert r["warnings"] == [said[1], said[0]]


def test_reasons_are_counted_without_their_details() -> None:
    skipped = [{"path": "cat/a.jpg", "reason": "cannot decode (broken data stream)"},
               {"path": "cat/b.jpg", "reason": "cannot decode (image file is truncated)"},
               {"path": "dog/c.jpg", "reason": "empty file; warning: Corrupt EXIF data"}]
    r = report(skipped=skipped)
    assert r["skipped_by_reason"] == {"cannot decode": 2, "empty file": 1}


def test_set_aside_warnings_name_class_count_and_reasons() -> None:
    files = [(f"cat/{i}.jpg", 0) for i in range(100)] + [(f"dog/{i}.jpg", 1) for i in range(50)]
    skipped = ([{"path": f"cat/{i}.jpg", "reason": "cannot decode (x)"} for i in range(2)]
               + [{"path": f"dog/{i}.jpg", "reason": "the same image is in another class"}
                  for i in range(3)]
               + [{"path": "dog/.a.jpg", "reason": "hidden"},
                  {"path": "README.txt", "reason": "not inside a class folder"},
                  {"path": "birds", "reason": "empty class folder"}])
    lines = set_aside_warnings(["cat", "dog"], files, skipped)
    # cat lost 2 of 100 (not more than WARN_FRACTION); dog 4 of 51 (the hidden one counts).
    assert WARN_FRACTION == 0.02
    assert lines == [
        "class folder 'birds': empty class folder; it is left out",
        "class 'dog': 4 of 51 files (8%) set aside: 3 the same image is in another class, "
        "1 hidden",
    ]
    more = [*skipped, {"path": "cat/2.jpg", "reason": "empty file"}]
    assert "class 'cat': 3 of 100 files (3%) set aside: 2 cannot decode, 1 empty file" in (
        set_aside_warnings(["cat", "dog"], files, more))
