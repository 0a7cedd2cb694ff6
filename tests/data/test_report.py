"""Tests of the split stage's data report (imgclf.data.report)."""

from __future__ import annotations

import json

import numpy as np

from imgclf.data.report import split_report


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
