"""The split stage: data/raw -> data/prepared (TFRecord shards, manifest.csv, report.json,
meta.json).

Every image is decoded once, in parallel, and what the shards keep of it (by default
the file's own bytes, metadata stripped, else the resized pixels: ``split.encoding``,
see :mod:`imgclf.data.decoding`) streamed to disk; the split itself only needs labels
and hashes, so memory does not grow with the dataset. ``run`` reads as its phases:
``scan``, ``decode_all`` (pass 1), ``assign`` (duplicates and splits), ``write_shards``
(pass 2), ``write_manifest``, ``build_report``, ``warn``.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf import fsutil
from imgclf.data.decoding import THUMB_SIDE, Decoded, close_scratch, decode_file
from imgclf.data.duplicates import duplicate_groups, label_conflicts
from imgclf.data.layout import (
    IMAGE_SUFFIXES,
    SKIPPED_LIST,
    given_splits,
    has_image_suffix,
    is_hidden,
    read_skipped,
)
from imgclf.data.overrides import apply_overrides
from imgclf.data.presplit import (
    describe,
    duplicates_across_splits,
    given_split_ids,
    keep_given_splits,
)
from imgclf.data.shards import ShardsMeta, ShardWriter, encode_example
from imgclf.data.split_report import set_aside_warnings, split_report
from imgclf.data.stratify import SPLITS, stratified_group_split
from imgclf.errors import UserError
from imgclf.machine import usable_cores
from imgclf.params import DataParams, SplitParams
from imgclf.progress import progress

PARALLEL_MIN_FILES = 64  # below this, starting worker processes costs more than it saves


@dataclass(frozen=True)
class Scan:
    """What is in the raw folder: class names, candidate files and files skipped outright."""

    class_names: list[str]
    files: list[tuple[str, int]]  # (path relative to the raw folder, class index)
    skipped: list[dict[str, str]]  # {"path", "reason"}


_NOT_AN_IMAGE_NAME = f"not an image file name (images end in {' '.join(sorted(IMAGE_SUFFIXES))})"


def scan(raw: Path) -> Scan:
    """List class folders and their image files; every entry passed over is in ``skipped``
    with its reason (hidden, a link leaving ``raw``, not in a class folder, not an image
    file name, an empty class folder)."""
    if not raw.is_dir():
        raise UserError(f"{raw}: not a folder; run the download stage first (dvc repro download)")
    root = raw.resolve()
    skipped: list[dict[str, str]] = []
    per_class: dict[str, list[str]] = {}
    for entry in sorted(raw.iterdir()):
        rel = entry.name
        if rel == SKIPPED_LIST:  # download's list, merged by run()
            continue
        if is_hidden(rel):
            skipped.append({"path": rel, "reason": "hidden"})
        elif entry.is_symlink() and not entry.resolve().is_relative_to(root):
            skipped.append({"path": rel, "reason": "link to outside the dataset"})
        elif not entry.is_dir():
            skipped.append({"path": rel, "reason": "not inside a class folder"})
        else:
            per_class[rel] = _class_files(entry, raw, root, skipped)
    class_names = [name for name, files in per_class.items() if files]
    # A folder whose entries were all passed over above has no usable image either.
    skipped += [{"path": name, "reason": "class folder has no usable image"
                 if any(e["path"].startswith(f"{name}/") for e in skipped)
                 else "empty class folder"}
                for name, files in per_class.items() if not files]
    files = [(f, c) for c, name in enumerate(class_names) for f in per_class[name]]
    return Scan(class_names, files, skipped)


def _class_files(folder: Path, raw: Path, root: Path, skipped: list[dict[str, str]]) -> list[str]:
    """The image files under class ``folder`` (paths relative to ``raw``, sorted as walked);
    each entry passed over is added to ``skipped`` with its reason."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in sorted(dirnames):  # sub-folders not walked, each with its reason
            path = Path(dirpath) / d
            relpath = path.relative_to(raw).as_posix()
            if is_hidden(d):
                skipped.append({"path": relpath, "reason": "hidden"})
            elif path.is_symlink():  # os.walk does not follow them: no loops
                skipped.append({"path": relpath, "reason": "link to a folder"})
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d)
                             and not (Path(dirpath) / d).is_symlink())
        for name in sorted(filenames):
            path = Path(dirpath) / name
            relpath = path.relative_to(raw).as_posix()
            reason = _file_skip_reason(path, name, root)
            if reason:
                skipped.append({"path": relpath, "reason": reason})
            else:
                files.append(relpath)
    return files


def _file_skip_reason(path: Path, name: str, root: Path) -> str | None:
    """Why file ``path`` (named ``name``) is no image of the dataset, or None if it is one."""
    if is_hidden(name):
        return "hidden"
    if path.is_symlink() and not path.resolve().is_relative_to(root):
        return "link to outside the dataset"
    if not path.is_file():
        return "not a regular file"
    if not has_image_suffix(name):
        return _NOT_AN_IMAGE_NAME
    return None


def scan_given(raw: Path, layout: dict[str, str]) -> tuple[Scan, np.ndarray]:
    """``scan`` of each split folder of ``raw``, merged: classes are the union (sorted),
    paths relative to ``raw``; with the ``(N,)`` given split id of each file."""
    scans = {folder: scan(raw / folder) for folder in layout.values()}
    class_names = sorted({name for found in scans.values() for name in found.class_names})
    files, skipped = [], []
    for folder, found in scans.items():
        index = [class_names.index(name) for name in found.class_names]  # once a folder
        files += [(f"{folder}/{f}", index[c]) for f, c in found.files]
        skipped += [{**row, "path": f"{folder}/{row['path']}"} for row in found.skipped]
    for entry in sorted(raw.iterdir()):  # beside the split folders: not part of any split
        if entry.name not in layout.values() and not is_hidden(entry.name):
            skipped.append({"path": entry.name, "reason": "not inside a split folder"})
    files.sort(key=lambda fc: (fc[1], fc[0]))  # by class, as scan() lists them
    return Scan(class_names, files, skipped), given_split_ids([f for f, _ in files], layout)


def run(data: DataParams, split: SplitParams, raw: str | os.PathLike[str],
        out: str | os.PathLike[str], report_dir: str | os.PathLike[str] | None = None,
        overrides: str | os.PathLike[str] | None = None) -> None:
    """Split ``raw`` into ``out``; with ``report_dir``, draw the data report's pictures
    there too (see :mod:`imgclf.data.split_report_plots`); ``overrides`` is the
    overrides.yaml to apply (:mod:`imgclf.data.overrides`)."""
    raw, size = Path(raw), data.image_size
    layout = given_splits(raw) if raw.is_dir() else None  # train/, test/ ...: kept as given
    found, given = scan_given(raw, layout) if layout else (scan(raw), None)
    fixed = apply_overrides(found.files, found.class_names, overrides)
    found = Scan(found.class_names, fixed.files, found.skipped + fixed.skipped)
    given = given[fixed.keep] if given is not None else None
    with fsutil.atomic_dir(out) as tmp:
        images = decode_all(found, raw, tmp, size, split)
        chosen = assign(found, given, images, split)
        meta, rows = write_shards(tmp, images, chosen, split, size)
        (tmp / "meta.json").write_text(meta.to_json(), encoding="utf-8")
        write_manifest(tmp / "manifest.csv", rows)
        report = build_report(found, images, chosen, rows, split, size, layout)
        report["overrides"] = fixed.report
        fsutil.write_json(tmp / "report.json", report)
        if report_dir is not None:
            from imgclf.data.split_report_plots import write_report_plots  # matplotlib: only here

            write_report_plots(report, tmp, rows, report_dir)
    report_path = Path(out) / "report.json"
    print(f"split: {len(rows)} images of {len(chosen.class_names)} classes "
          f"({', '.join(f'{k} {v}' for k, v in meta.counts.items())}), "
          f"{len(chosen.skipped)} skipped, {len(report['duplicate_groups'])} duplicate groups; "
          f"stored: {', '.join(f'{k} {v}' for k, v in sorted(meta.stored.items()))}; "
          f"see {report_path}")
    warn(found, chosen, report, layout, split, report_path)


@dataclass(frozen=True)
class Decoding:
    """Pass 1: each file of a ``Scan`` decoded once, what the shards keep of it in scratch
    files."""

    kept: list[int]  # index into Scan.files of each usable image
    decoded: list[Decoded]  # of each kept image, in the same order
    skipped: list[dict[str, str]]  # the scan's, and the files that could not be decoded


def decode_all(found: Scan, raw: Path, tmp: Path, size: int, split: SplitParams) -> Decoding:
    """Decode every file of ``found``; the workers write what the shards keep of each
    (``decoding.stored_bytes``) to scratch files in ``tmp``."""
    kept: list[int] = []
    decoded: list[Decoded] = []
    skipped = found.skipped + read_skipped(raw)  # and what download did not copy
    results = _decoded([str(raw / f) for f, _ in found.files], size, tmp,
                       split.encoding, split.quality)
    bar = progress(results, total=len(found.files), desc="split: decoding", unit="img")
    for i, result in enumerate(bar):
        if isinstance(result, str):
            skipped.append({"path": found.files[i][0], "reason": result})
        else:
            kept.append(i)
            decoded.append(result)
    return Decoding(kept, decoded, skipped)


def _decoded(paths: list[str], size: int, folder: Path, encoding: str,
             quality: int) -> Iterator[Decoded | str]:
    """Yield ``decode_file`` results in input order, on all cores when it pays off."""
    jobs = [(p, size, str(folder), encoding, quality) for p in paths]
    if len(jobs) < PARALLEL_MIN_FILES:
        try:
            yield from map(decode_file, jobs)
        finally:
            close_scratch(str(folder))
        return
    workers = usable_cores()
    # spawn, not fork: the parent may hold TensorFlow's threads (tests, notebooks). An
    # executor, not a Pool: a worker that dies breaks it with an error instead of being
    # replaced forever (as happens when a script without a __main__ guard calls run()).
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            yield from pool.map(decode_file, jobs, chunksize=16)
    except BrokenProcessPool:
        raise UserError(
            "split: its worker processes died while starting or decoding; when calling "
            "imgclf.data.split.run from a script, put the call under "
            "`if __name__ == \"__main__\":` (they re-import the script), and check free "
            "memory") from None


@dataclass(frozen=True)
class Assignment:
    """Where each decoded image goes; the arrays are ``(N,)``, one entry per kept image."""

    paths: list[str]  # relative to the raw folder
    class_names: list[str]  # the classes left with usable images
    labels: np.ndarray  # int64 index into class_names
    groups: np.ndarray  # duplicate group (the same picture), kept in one split
    mixed: np.ndarray  # bool: the same picture is in another class too
    split_of: np.ndarray  # int64 index into SPLITS; -1: left out
    given: np.ndarray  # the dataset's own split id of each; empty if it came unsplit
    skipped: list[dict[str, str]]  # the decoding's, and the images left out here


def assign(found: Scan, given: np.ndarray | None, images: Decoding,
           split: SplitParams) -> Assignment:
    """Group duplicates, settle the same picture in two classes, drop classes left
    empty, and give each group a split (the dataset's own, when it came split)."""
    kept, decoded = images.kept, images.decoded
    skipped = list(images.skipped)
    shas = [d.sha256 for d in decoded]
    given_kept = given[kept] if given is not None else np.zeros(0, np.int64)
    paths = [found.files[i][0] for i in kept]
    labels = np.array([found.files[i][1] for i in kept], dtype=np.int64)
    thumbs = np.frombuffer(b"".join(d.thumb for d in decoded), np.uint8).reshape(
        len(decoded), THUMB_SIDE * THUMB_SIDE)
    groups = duplicate_groups(shas, [d.dhash for d in decoded], thumbs,
                              split.near_duplicates)
    mixed = label_conflicts(labels, groups)  # the same picture in two classes
    conflict = _cross_class(split, mixed, groups, paths, skipped)
    class_names, labels = _drop_empty_classes(found.class_names, labels, ~conflict, skipped)
    split_of = np.full(len(kept), -1, dtype=np.int64)
    usable = np.flatnonzero(~conflict)
    if given is None:
        split_of[usable] = stratified_group_split(labels[usable], groups[usable],
                                                  (split.train, split.val, split.test),
                                                  split.seed, class_names)
    else:
        split_of[usable] = keep_given_splits(given_kept[usable], labels[usable],
                                             groups[usable], split.val, split.seed,
                                             class_names)
    return Assignment(paths, class_names, labels, groups, mixed, split_of, given_kept, skipped)


def write_shards(tmp: Path, images: Decoding, chosen: Assignment, split: SplitParams,
                 size: int) -> tuple[ShardsMeta, list[dict[str, str]]]:
    """Pass 2: copy the stored images into per-split TFRecord shards in ``tmp``; return
    their meta and the manifest's rows (``path``, ``label``, ``split``, ``sha256``).

    Each split is written in its own seeded order, so that streaming readers see the
    classes mixed. pread, not a memory map: mapped pages would count in this process's
    memory and grow with the data. The scratch files are removed after.
    """
    decoded, names, labels = images.decoded, chosen.class_names, chosen.labels
    meta = ShardsMeta(size, names, split.encoding,
                      split.quality if split.encoding == "jpeg" else None)
    scratch = {name: os.open(tmp / name, os.O_RDONLY)
               for name in sorted({d.scratch for d in decoded})}
    shard_bytes = int(split.shard_mb * 1024 * 1024)
    rng = np.random.default_rng(split.seed)
    rows = []
    try:
        for s, name in enumerate(SPLITS):
            writer = ShardWriter(tmp, name, shard_bytes)
            for j in rng.permutation(np.flatnonzero(chosen.split_of == s)):
                d, path = decoded[j], chosen.paths[j]
                encoded = os.pread(scratch[d.scratch], d.length, d.offset)
                writer.write(encode_example(int(labels[j]), names[labels[j]], encoded,
                                            d.stored, d.dims, d.sha256, path))
                what = f"source {d.stored}" if d.kept else d.stored
                meta.stored[what] = meta.stored.get(what, 0) + 1
                rows.append({"path": path, "label": names[labels[j]], "split": name,
                             "sha256": d.sha256})
            writer.close()
            meta.splits[name], meta.counts[name] = writer.names, writer.count
            meta.sizes[name] = writer.bytes
    finally:
        for fd in scratch.values():
            os.close(fd)
    for name in scratch:
        (tmp / name).unlink()
    return meta, rows


def write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    """manifest.csv: one row per image written, in the shards' order."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split", "sha256"])
        writer.writeheader()
        writer.writerows(rows)


def build_report(found: Scan, images: Decoding, chosen: Assignment, rows: list[dict[str, str]],
                 split: SplitParams, size: int,
                 layout: dict[str, str] | None) -> dict[str, Any]:
    """report.json: ``split_report``'s content, the settings that shaped it, the
    cross-class groups and, for a dataset that came split, where each split came from."""
    paths, decoded, groups = chosen.paths, images.decoded, chosen.groups
    report = split_report(chosen.class_names, rows, chosen.skipped, groups, paths,
                          {p: d.size for p, d in zip(paths, decoded, strict=True)}, size,
                          warnings=[{"path": p, "warning": w} for p, d in
                                    zip(paths, decoded, strict=True) for w in d.warnings],
                          labels=[found.class_names[found.files[i][1]] for i in images.kept])
    report["settings"] = {"near_duplicates": split.near_duplicates,
                          "cross_class_duplicates": split.cross_class_duplicates}
    report["cross_class_groups"] = [[paths[i] for i in np.flatnonzero(groups == g)]
                                    for g in np.unique(groups[chosen.mixed])]
    if layout:  # where each split came from, and the leaks the dataset ships with
        report["given_splits"] = {
            "from": describe(layout, split.val),
            "duplicates_across_splits": duplicates_across_splits(paths, groups, chosen.given)}
    return report


def warn(found: Scan, chosen: Assignment, report: dict[str, Any], layout: dict[str, str] | None,
         split: SplitParams, report_path: Path) -> None:
    """On stderr: what was set aside, kept as the dataset gave it, or is out of balance."""
    lines = set_aside_warnings(found.class_names, found.files, chosen.skipped)
    mixed = chosen.mixed
    if split.cross_class_duplicates == "keep" and mixed.any():
        lines.append(f"{int(mixed.sum())} images in {len(report['cross_class_groups'])} "
                     "group(s) are the same picture as one in another class, e.g. "
                     f"{', '.join(report['cross_class_groups'][0][:2])}; kept, each with its "
                     "label, in one split (split.cross_class_duplicates: drop leaves them out)")
    if layout:
        leaks = report["given_splits"]["duplicates_across_splits"]
        print(f"split: kept the dataset's own split ({', '.join(layout.values())})"
              + (f"; warning: {len(leaks)} image(s) appear in more than one of its splits "
                 "(listed in report.json, left where the dataset put them)" if leaks else ""),
              file=sys.stderr)
    if report["imbalance"]["warning"]:
        print(f"split: warning: {report['imbalance']['warning']}", file=sys.stderr)
    for line in lines:
        print(f"split: warning: {line}; see {report_path}", file=sys.stderr)


def _cross_class(split: SplitParams, conflict: np.ndarray, groups: np.ndarray,
                 paths: list[str], skipped: list[dict[str, str]]) -> np.ndarray:
    """``(N,)`` bool: of the images whose picture is in another class too (``conflict``),
    those to drop, as ``split.cross_class_duplicates`` says (``keep``: none; ``error``:
    stop naming them; ``drop``: all, each added to ``skipped``)."""
    if split.cross_class_duplicates == "keep" or not conflict.any():
        return np.zeros(len(conflict), dtype=bool)
    if split.cross_class_duplicates == "error":
        first = np.flatnonzero(groups == groups[np.argmax(conflict)])
        n_groups = len(np.unique(groups[conflict]))
        raise UserError(
            f"{n_groups} group(s) of the same picture span classes, e.g. "
            f"{', '.join(paths[i] for i in first[:3])}; fix their labels, or set "
            "split.cross_class_duplicates to keep (one split, each its own label) or drop")
    for i in np.flatnonzero(conflict):
        skipped.append({"path": paths[i], "reason": "the same image is in another class"})
    return conflict


def _drop_empty_classes(class_names: list[str], labels: np.ndarray, usable: np.ndarray,
                        skipped: list[dict[str, str]]) -> tuple[list[str], np.ndarray]:
    """Remove classes with no usable image; return the kept names and re-numbered labels."""
    counts = np.bincount(labels[usable], minlength=len(class_names))
    keep = [c for c in range(len(class_names)) if counts[c] > 0]
    skipped += [{"path": class_names[c], "reason": "class folder has no usable image"}
                for c in range(len(class_names)) if counts[c] == 0]
    if len(keep) < 2:
        raise UserError(
            f"found {len(keep)} class folder(s) with usable images "
            f"({', '.join(class_names[c] for c in keep) or 'none'}); a classifier needs at "
            "least 2: put each class's images in its own sub-folder of the raw data folder")
    remap = np.full(len(class_names), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    return [class_names[c] for c in keep], remap[labels]
