"""The audit stage: data/prepared + data/features (+ data/raw) -> metrics/data_audit.

Writes ``counts.json`` (the DVC metrics), ``findings/`` (a CSV per finding type and
``summary.md``) and ``grids/`` (a picture per finding type). Memory stays bounded: the
embeddings are memory-mapped and projected a block at a time, the neighbour search
goes a block of rows at a time, the images are streamed a batch at a time and only
per-image scores are kept (see docs/audit.md for the figures at 100,000 images).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf import fsutil
from imgclf.audit import findings as fd
from imgclf.audit.embeddings import NoEmbeddings, project, read_embeddings
from imgclf.audit.labels import find_label_issues, out_of_fold_probs
from imgclf.audit.neighbours import near_duplicates, nearest, outliers
from imgclf.audit.quality import PIXEL_ISSUES, pixel_scores, size_scores
from imgclf.audit.records import Records, read_records
from imgclf.audit.report import summary, write_grids, write_tables
from imgclf.data.stratify import SPLITS
from imgclf.params import AuditParams
from imgclf.progress import progress

COUNTS, FINDINGS, GRIDS = "counts.json", "findings", "grids"
BATCH = 64  # images decoded at once for the quality checks


@dataclass(frozen=True)
class Audit:
    """What the stage found: the counts (metrics) and the tables (for W&B)."""

    counts: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]]


def embedding_findings(found: fd.Findings, records: Records, features: str | os.PathLike[str],
                       params: AuditParams) -> None:
    """Label issues, outliers and near-duplicates from the embeddings into ``found``."""
    from threadpoolctl import threadpool_limits

    # One BLAS thread: on a busy machine (other stages, other users) more threads than
    # free cores made the projection ~14x slower (6.3 s against 0.46 s for the real
    # photos' 2,100 x 1,280 embeddings at load 20 on 2 cores); the work here is small.
    with threadpool_limits(1):
        _embedding_findings(found, records, features, params)


def _embedding_findings(found: fd.Findings, records: Records,
                        features: str | os.PathLike[str], params: AuditParams) -> None:
    embeddings = read_embeddings(features, records)
    projection = project(embeddings, params.seed)
    z = projection.z
    unit_z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    sims, idx = nearest(unit_z)
    fd.add_outliers(found, records, outliers(sims))
    fd.add_duplicates(found, records, near_duplicates(
        embeddings, projection.mean, sims, idx, params.duplicate_similarity))
    probs = out_of_fold_probs(z / projection.scale, records.labels, len(records.class_names),
                              params.folds, params.seed)
    fd.add_label_issues(found, records, find_label_issues(probs, records.labels))


def quality_scores(records: Records, prepared: str | os.PathLike[str],
                   raw: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    """Each quality issue's ``(N,)`` scores: pixels from the shards, sizes from ``raw``."""
    from imgclf.data.records import make_dataset  # TensorFlow: only here
    from imgclf.data.shards import read_meta

    meta = read_meta(prepared)
    scores = np.ones((len(records), len(PIXEL_ISSUES)))
    row = 0
    with progress(total=len(records), desc="audit: image quality", unit="img") as bar:
        for split in SPLITS:
            if not meta.counts.get(split):
                continue
            for images, _ in make_dataset(prepared, meta, split, BATCH):
                for image in images.numpy().astype(np.uint8):
                    scores[row] = pixel_scores(image)
                    row += 1
                bar.update(len(images))
    out = {issue: scores[:, c] for c, issue in enumerate(PIXEL_ISSUES)}
    sizes = original_sizes(records, raw)
    if sizes is not None:
        out["odd_aspect_ratio"], out["odd_size"] = size_scores(sizes)
    return out


def original_sizes(records: Records, raw: str | os.PathLike[str] | None) -> np.ndarray | None:
    """``(N, 2)`` (width, height) of each original file, read from its header; None when
    ``raw`` is not given or lacks a file (then size issues are not checked)."""
    from PIL import Image

    if raw is None:
        return None
    sizes = np.zeros((len(records), 2), np.int64)
    for i, path in enumerate(records.paths):
        try:
            with Image.open(Path(raw) / path) as image:
                sizes[i] = image.size
        except OSError:
            print(f"audit: warning: {Path(raw) / path} unreadable; sizes not checked",
                  file=sys.stderr)
            return None
    return sizes


def run(params: AuditParams, prepared: str | os.PathLike[str],
        features: str | os.PathLike[str], out: str | os.PathLike[str],
        raw: str | os.PathLike[str] | None = None) -> Audit:
    """Audit ``prepared`` with the embeddings in ``features``; write ``out``."""
    start = time.perf_counter()
    records = read_records(prepared)
    found, note = fd.Findings(), None
    if not params.enabled:
        note = "the audit is off (audit.enabled: false)"
    else:
        try:
            embedding_findings(found, records, features, params)
        except NoEmbeddings as e:
            note = f"no embeddings, so no label issues, outliers or duplicates ({e})"
        fd.add_quality(found, records, quality_scores(records, prepared, raw))
    counts = fd.counts(found, records, note)
    _write(Path(out), found, records, prepared, counts, params)
    print(f"audit: {len(records)} images: {counts['label_issues']} likely label errors, "
          f"{counts['outliers']} outliers, {counts['near_duplicates']} near-duplicate pairs "
          f"({counts['leaks']} across splits), {sum(counts['quality'].values())} quality "
          f"issues in {time.perf_counter() - start:.1f} s; see {Path(out) / FINDINGS}"
          + (f" ({note})" if note else ""))
    return Audit(counts, found.tables)


def _write(out: Path, found: fd.Findings, records: Records, prepared: str | os.PathLike[str],
           counts: dict[str, Any], params: AuditParams) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with fsutil.atomic_dir(out / FINDINGS) as tmp:
        write_tables(found, tmp)
        fsutil.write_text(tmp / "summary.md", summary(found, counts))
    with fsutil.atomic_dir(out / GRIDS) as tmp:
        write_grids(found, records, prepared, tmp, params.grid_images, counts.get("note"))
    fsutil.write_json(out / COUNTS, counts)
