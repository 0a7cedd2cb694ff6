"""The split stage's data report: what was kept, what was skipped and why (pure).

``split_report`` builds ``data/prepared/report.json``: images per class and split,
the skipped files with their reasons, the groups of duplicates, and the sizes of the
original files (before resizing) with their aspect ratios. The pictures drawn from it
are made by :mod:`imgclf.data.split_report_plots`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Upper edges of the aspect-ratio (width / height) bins of the report; 0.95-1.05 is
# "about square", below it portrait, above it landscape.
ASPECT_EDGES = (0.5, 0.75, 0.95, 1.05, 1.33, 2.0)
# The report warns when the largest class has more than this many times the images of
# the smallest: past that, plain training tends to neglect the small classes.
IMBALANCE_WARN_RATIO = 3.0
# A class that loses more than this share of its files is named on the console.
WARN_FRACTION = 0.02
LARGEST_GROUPS = 10
# Reasons the scan gives to entries it passes over without decoding them.
SCAN_REASONS = ("hidden", "link to outside the dataset", "link to a folder", "not a regular file",
                "not an image file name")


def reason_kind(reason: str) -> str:
    """The reason without its details: "cannot decode (broken data)" -> "cannot decode"."""
    return re.split(r" \(|; ", reason, maxsplit=1)[0]


def set_aside_warnings(class_folders: Sequence[str], files: Sequence[tuple[str, int]],
                       skipped: Sequence[dict[str, str]]) -> list[str]:
    """One console line per class folder that lost more than ``WARN_FRACTION`` of its
    files (with the count and reasons), and one per class folder left out entirely.

    ``files`` are the ``(path, class index)`` candidates of the scan, ``skipped`` every
    entry set aside (``{"path", "reason"}``, paths relative to the raw folder).
    """
    totals = Counter(class_folders[c] for _, c in files)
    lost: dict[str, Counter[str]] = {}
    lines = []
    for entry in skipped:
        folder, _, rest = entry["path"].partition("/")
        if not rest:
            if reason_kind(entry["reason"]) in ("empty class folder",
                                                "class folder has no usable image"):
                lines.append(f"class folder {folder!r}: {entry['reason']}; it is left out")
            continue
        lost.setdefault(folder, Counter())[reason_kind(entry["reason"])] += 1
    for folder in class_folders:
        reasons = lost.get(folder, Counter())
        n = sum(reasons.values())
        # The scan's candidates, and the entries it passed over before decoding.
        total = totals[folder] + sum(c for r, c in reasons.items() if r in SCAN_REASONS)
        if total and n / total > WARN_FRACTION:
            why = ", ".join(f"{c} {r}" for r, c in reasons.most_common())
            lines.append(f"class {folder!r}: {n} of {total} files ({100 * n / total:.0f}%) "
                         f"set aside: {why}")
    return lines


def largest_groups(groups: np.ndarray, paths: Sequence[str],
                   labels: Sequence[str]) -> list[dict[str, Any]]:
    """The ``LARGEST_GROUPS`` largest duplicate groups (of 2 or more), largest first:
    ``{"size", "classes": {class: count}, "first": path}``; ``groups`` is ``(N,)``."""
    ids, first, sizes = np.unique(groups, return_index=True, return_counts=True)
    order = sorted((i for i in range(len(ids)) if sizes[i] > 1),
                   key=lambda i: (-sizes[i], first[i]))[:LARGEST_GROUPS]
    out = []
    for i in order:
        members = np.flatnonzero(groups == ids[i])
        out.append({"size": int(sizes[i]),
                    "classes": dict(Counter(labels[j] for j in members.tolist())),
                    "first": paths[int(first[i])]})
    return out


def split_report(class_names: Sequence[str], rows: Sequence[dict[str, str]],
                 skipped: Sequence[dict[str, str]], groups: np.ndarray,
                 paths: Sequence[str], sizes: Mapping[str, tuple[int, int]] | None = None,
                 image_size: int | None = None, *,
                 warnings: Sequence[dict[str, str]] = (),
                 labels: Sequence[str] | None = None) -> dict[str, Any]:
    """A JSON-ready summary of a split.

    ``rows`` are the manifest rows (path, label, split, sha256); ``skipped`` the entries
    of the raw folder left out with their reason; ``groups`` the ``(N,)`` duplicate-group
    id of each decoded file in ``paths``, and ``labels`` their class folders (for
    ``largest_groups``; default: the first part of each path). ``warnings`` are what
    the image library said about files that were still used (``{"path", "warning"}``).
    With ``sizes`` (path -> original ``(width, height)``, for at least every row) the
    report has an ``image_sizes`` section (see :func:`size_report`); ``image_size`` is
    the size the images were resized to.
    """
    per_split = Counter((r["split"], r["label"]) for r in rows)
    splits = sorted({r["split"] for r in rows}, key=["train", "val", "test"].index)
    members: dict[int, list[str]] = {}
    for g, path in zip(groups.tolist(), paths, strict=True):
        members.setdefault(g, []).append(path)
    per_class = Counter(r["label"] for r in rows)
    report: dict[str, Any] = {
        "images": len(rows),
        "classes": list(class_names),
        "counts": {s: {c: per_split[(s, c)] for c in class_names} for s in splits},
        "per_class": {c: per_class[c] for c in class_names},
        "skipped": sorted(skipped, key=lambda r: r["path"]),
        "skipped_by_reason": dict(Counter(reason_kind(r["reason"]) for r in skipped)),
        "warnings": sorted(warnings, key=lambda r: (r["path"], r["warning"])),
        "duplicate_groups": [m for m in members.values() if len(m) > 1],
        "largest_groups": largest_groups(
            groups, paths, labels if labels is not None else [p.split("/")[0] for p in paths]),
        "imbalance": class_imbalance({c: per_class[c] for c in class_names}),
    }
    if sizes is not None:
        report["image_sizes"] = size_report(class_names, rows, sizes, image_size)
    return report


def class_imbalance(per_class: Mapping[str, int]) -> dict[str, Any]:
    """How uneven the classes are: ``{"largest", "smallest", "ratio", "warning"}``.

    ``per_class`` maps each class to its number of images; ``ratio`` is the largest
    count over the smallest (None when a class has none), and ``warning`` a sentence
    when it exceeds :data:`IMBALANCE_WARN_RATIO` (else None).
    """
    if not per_class:
        return {"largest": None, "smallest": None, "ratio": None, "warning": None}
    largest = max(per_class, key=lambda c: per_class[c])
    smallest = min(per_class, key=lambda c: per_class[c])
    big, small = per_class[largest], per_class[smallest]
    ratio = round(big / small, 2) if small else None
    warning = None
    if ratio is None or ratio > IMBALANCE_WARN_RATIO:
        warning = (f"uneven classes: {largest} has {big} images, "
                   f"{f'{ratio:g}x' if ratio else 'against'} the {small} of {smallest}; "
                   "consider train.class_weight: balanced and watch balanced_accuracy")
    return {"largest": largest, "smallest": smallest, "ratio": ratio, "warning": warning}


def _stats(values: np.ndarray, decimals: int, pixels: bool = False) -> dict[str, float]:
    """min, median, mean, max (min and max as ints for ``pixels``); {} for no values."""
    if not values.size:
        return {}
    ends = int if pixels else float
    return {"min": ends(round(float(values.min()), decimals)),
            "median": round(float(np.median(values)), decimals),
            "mean": round(float(values.mean()), decimals),
            "max": ends(round(float(values.max()), decimals))}


def _size_stats(wh: np.ndarray) -> dict[str, dict[str, float]]:
    """min/median/mean/max of width, height and aspect ratio of ``(N, 2)`` sizes."""
    return {"width": _stats(wh[:, 0], 1, pixels=True),
            "height": _stats(wh[:, 1], 1, pixels=True),
            "aspect_ratio": _stats(wh[:, 0] / np.maximum(wh[:, 1], 1), 4)}


def size_report(class_names: Sequence[str], rows: Sequence[dict[str, str]],
                sizes: Mapping[str, tuple[int, int]],
                image_size: int | None = None) -> dict[str, Any]:
    """The original sizes of the images of ``rows``: how far resizing had to go.

    * ``width``, ``height``, ``aspect_ratio`` (width / height): min, median, mean, max;
    * ``orientation``: how many are landscape, square or portrait;
    * ``aspect_ratio_histogram``: ``{"from", "to", "count"}`` rows over the bins of
      :data:`ASPECT_EDGES` (``to`` None for the last, open bin);
    * ``smaller_than_target``: images with a side below ``image_size`` (enlarged);
    * ``per_class``: the three statistics of each class;
    * ``sizes``: every distinct ``{"class", "width", "height", "count"}``, most common
      first within each class: the whole distribution, compact when sizes repeat.
    """
    wh = np.array([sizes[r["path"]] for r in rows], dtype=np.float64).reshape(-1, 2)
    labels = [r["label"] for r in rows]
    aspect = wh[:, 0] / np.maximum(wh[:, 1], 1)
    edges = [0.0, *ASPECT_EDGES]
    bins = np.searchsorted(ASPECT_EDGES, aspect, side="right")
    histogram = [{"from": edges[b], "to": edges[b + 1] if b + 1 < len(edges) else None,
                  "count": int((bins == b).sum())} for b in range(len(edges))]
    distinct = Counter((label, int(w), int(h)) for label, (w, h) in zip(labels, wh, strict=True))
    order = {c: i for i, c in enumerate(class_names)}
    return {
        **_size_stats(wh),
        "orientation": {"landscape": int((wh[:, 0] > wh[:, 1]).sum()),
                        "square": int((wh[:, 0] == wh[:, 1]).sum()),
                        "portrait": int((wh[:, 0] < wh[:, 1]).sum())},
        "aspect_ratio_histogram": histogram,
        "resized_to": image_size,
        "smaller_than_target": (int((wh.min(axis=1) < image_size).sum()) if image_size
                                and len(wh) else 0),
        "per_class": {c: _size_stats(wh[[label == c for label in labels]])
                      for c in class_names},
        "sizes": [{"class": c, "width": w, "height": h, "count": n} for (c, w, h), n in
                  sorted(distinct.items(), key=lambda kv: (order.get(kv[0][0], 0), -kv[1],
                                                           kv[0][1], kv[0][2]))],
    }
