"""The export stage: models/model.keras -> models/export/ and metrics/export.json.

Every format of ``export.formats`` is written (the table ``formats``), loaded back
through the same runtime ``imgclf predict`` uses (``imgclf.inference.runtimes``) and
scored on the test split, with the Keras model scored the same way beside it. The test
images are the split stage's pixels, as ``imgclf evaluate`` reads them, scored one pass
each (no test-time augmentation: the figures describe one call of the exported file, as
an app makes it).

``metrics/export.json`` (committed, diffed in pull requests) holds only what another
machine reproduces: accuracies and agreements to 4 decimals, size ratios to 3. What
depends on the machine, the timings and exact byte sizes, goes to a file beside it,
``metrics/export_machine.json``, which git ignores. Both are written even when a format
misses its bound; then the stage fails with one line naming each miss (``bounds``),
except for soft misses (wobble at the decision boundary), which it warns of, unless
``export.strict``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from imgclf import fsutil
from imgclf.data.shards import read_meta, read_split
from imgclf.errors import UserError, first_line
from imgclf.export.bounds import Miss
from imgclf.export.formats import FORMATS, REFERENCE, bound_misses, write_format
from imgclf.export.representative import REPRESENTATIVE_SPLIT, representative_images
from imgclf.export.scoring import (
    accuracy,
    compare,
    ood_figures,
    predict_timed,
    single_image_latency_ms,
)
from imgclf.inference.runtimes import (
    KERAS,
    Runtime,
    check_scorable,
    keras_runtime,
    load_runtime,
    model_format,
)
from imgclf.models.info import ModelInfo
from imgclf.models.ood import fit_threshold, generated_images, score_stats
from imgclf.models.saving import load_model
from imgclf.params import ExportParams, OodParams

SCORED_SPLIT = "test"
THRESHOLD_SPLIT = "val"  # each format's OOD threshold is fitted on it
MACHINE_SUFFIX = "_machine"  # metrics/export.json -> metrics/export_machine.json
# Accuracies and agreements to 4 decimals (one image of up to ~10,000 still shows, float
# noise does not); size ratios to 3 (files differ by a few bytes across machines), and
# probability differences to 3 (below 0.001 is noise).
FIGURE_DECIMALS = 4
DECIMALS_OF = {"size_ratio": 3, "max_prob_diff": 3}
# The OOD threshold is in the score's own units (e.g. squared distances in the
# hundreds): its significant digits, not decimals, are what a rerun reproduces.
SIGNIFICANT_OF = {"ood_threshold": 5}


def machine_path(metrics_path: str | os.PathLike[str]) -> Path:
    """Where the machine's figures go: beside ``metrics_path``, ``<stem>_machine.json``."""
    path = Path(metrics_path)
    return path.with_name(f"{path.stem}{MACHINE_SUFFIX}{path.suffix}")


def size_bytes(path: str | os.PathLike[str]) -> int:
    """The size of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def score(runtime: Runtime, images: np.ndarray, labels: np.ndarray, params: ExportParams,
          reference: np.ndarray | None = None, unknown: Unknown | None = None,
          ) -> tuple[dict[str, Any], dict[str, float], np.ndarray]:
    """``(figures, timings, probs (N, C))`` of ``runtime`` on ``images`` (N, S, S, 3) and
    ``labels``: figures are ``accuracy`` and, given the ``reference`` probabilities,
    ``scoring.compare``'s, and given ``unknown`` (for a model with the OOD score) the
    score's threshold on val and figures (``scoring.ood_figures``); timings the
    latencies and throughput of this machine."""
    probs, rate, scores = predict_timed(runtime, images, params.batch_size)
    p50, p95 = single_image_latency_ms(runtime, images, params.latency_runs)
    row: dict[str, Any] = {"accuracy": accuracy(labels, probs)}
    if reference is not None:
        row |= compare(probs, reference)
    if unknown is not None and scores is not None:
        figures, val_scores = ood_figures(runtime, unknown.val, scores,
                                          probs.argmax(1) == labels, unknown.generated,
                                          unknown.keep_rate, params.batch_size)
        row |= figures
        unknown.val_scores[runtime.path] = val_scores
    return row, {"latency_ms_p50": p50, "latency_ms_p95": p95, "images_per_s": rate}, probs


@dataclass
class Unknown:
    """What each format's OOD threshold is fitted on and checked with: the val images
    (V, S, S, 3) and the generated out-of-domain ones (G, S, S, 3); ``val_scores`` gets
    each runtime's val scores, by its path."""

    val: np.ndarray
    generated: np.ndarray
    keep_rate: float
    val_scores: dict[Path, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, data: str | os.PathLike[str], test: np.ndarray, ood: OodParams) -> Unknown:
        val, _ = read_split(data, THRESHOLD_SPLIT)
        kinds = generated_images(test.shape[1], ood.generated, ood.seed, test)
        return cls(val.astype(np.float32), np.concatenate(list(kinds.values())),
                   ood.keep_rate)

    def info_for(self, fmt: str, path: Path, info: ModelInfo) -> ModelInfo:
        """``info`` with the OOD threshold fitted on val with the format at ``path``."""
        if info.ood is None:
            return info
        scores = self.val_scores[path]
        return info.with_ood(replace(info.ood, threshold=fit_threshold(scores, self.keep_rate),
                                     keep_rate=self.keep_rate, fitted_on=THRESHOLD_SPLIT,
                                     fitted_with=fmt, stats=score_stats(scores)))


def run(params: ExportParams, data: str | os.PathLike[str], model_path: str | os.PathLike[str],
        out_dir: str | os.PathLike[str], metrics_path: str | os.PathLike[str],
        machine_metrics: str | os.PathLike[str] | None = None,
        ood: OodParams | None = None) -> None:
    """Write and score every format; ``machine_metrics`` defaults to ``machine_path``.
    Each format's file gets the OOD threshold fitted on val with that format (at
    ``ood.keep_rate``)."""
    meta = read_meta(data)
    if model_format(model_path) is not KERAS:
        raise UserError(f"{model_path}: the export stage starts from a .keras model file")
    model, info = load_model(model_path)
    check_scorable(info, meta, model_path, data, SCORED_SPLIT)
    images, labels = read_split(data, SCORED_SPLIT)
    unknown = (Unknown.of(data, images, ood or OodParams())
               if info.ood is not None and meta.counts.get(THRESHOLD_SPLIT) else None)
    images = images.astype(np.float32)  # once: every format takes float pixels 0..255
    keras_size = size_bytes(model_path)
    rows: dict[str, dict[str, Any]] = {}
    machine: dict[str, dict[str, Any]] = {}
    rows[REFERENCE], timings, keras_probs = score(keras_runtime(model, info, Path(model_path)),
                                                  images, labels, params, unknown=unknown)
    machine[REFERENCE] = {"size_bytes": keras_size, **timings}
    representative = None
    if any(FORMATS[fmt].representative for fmt in params.formats):
        representative = representative_images(data, params.int8_samples)
    with fsutil.atomic_dir(out_dir) as tmp:
        for fmt in params.formats:
            path = _write(fmt, model, info, tmp, representative)
            row, timings, _ = score(load_runtime(path), images, labels, params, keras_probs,
                                    unknown)
            write_info = FORMATS[fmt].write_info
            if unknown is not None and write_info is not None:
                write_info(path, unknown.info_for(fmt, path, info))
            size = size_bytes(path)
            rows[fmt] = {**row, "accuracy_delta": row["accuracy"] - rows[REFERENCE]["accuracy"],
                         "size_ratio": size / keras_size}
            machine[fmt] = {"size_bytes": size, **timings}
    misses = bound_misses(rows, params)
    metrics = {"test_images": len(images),
               "int8_calibration": {"split": REPRESENTATIVE_SPLIT,
                                    "images": 0 if representative is None
                                    else len(representative)},
               **_rounded(rows),
               "soft_misses": [m.text for m in misses if m.soft]}
    machine_metrics = machine_path(metrics_path) if machine_metrics is None else machine_metrics
    fsutil.write_json(metrics_path, metrics)
    fsutil.write_json(machine_metrics, machine)
    _summary(rows, machine, metrics_path, machine_metrics)
    _fail_or_warn(misses, params.strict)


def _write(fmt: str, model: Any, info: ModelInfo, folder: Path,
           representative: np.ndarray | None) -> Path:
    print(f"export: writing {fmt}", flush=True)
    try:
        return write_format(fmt, model, info, folder, representative)
    except Exception as exc:  # the converters raise many types; name the format
        raise UserError(f"{fmt}: the conversion failed ({first_line(exc)})") from exc


def _rounded(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rows to the decimals another machine reproduces (``+ 0.0``: no ``-0.0``)."""
    return {fmt: {k: _round(k, v) if isinstance(v, float) else v for k, v in row.items()}
            for fmt, row in rows.items()}


def _round(key: str, value: float) -> float:
    if key in SIGNIFICANT_OF:
        return float(f"{value:.{SIGNIFICANT_OF[key]}g}") + 0.0
    return round(value, DECIMALS_OF.get(key, FIGURE_DECIMALS)) + 0.0


def _summary(rows: Mapping[str, Mapping[str, Any]], machine: Mapping[str, Mapping[str, Any]],
             metrics_path: str | os.PathLike[str],
             machine_metrics: str | os.PathLike[str]) -> None:
    for fmt, row in rows.items():
        agree = f", agreement {row['agreement']:.4f}" if "agreement" in row else ""
        if "kept_share" in row:
            agree += (f", kept {row['kept_share']:.1%} of test, flagged "
                      f"{row['generated_unknown']:.1%} of generated")
        m = machine[fmt]
        print(f"export: {fmt}: {m['size_bytes'] / 1e6:.2f} MB, accuracy {row['accuracy']:.4f}"
              f"{agree}, {m['latency_ms_p50']:.2f} ms per image (p95 "
              f"{m['latency_ms_p95']:.2f}), {m['images_per_s']:.0f} images/s batched")
    print(f"export: metrics in {metrics_path}; this machine's timings and byte sizes in "
          f"{machine_metrics}")


def _fail_or_warn(misses: list[Miss], strict: bool) -> None:
    """Warn of the soft misses; fail with one line on the others (on all when ``strict``)."""
    failing = [m.text for m in misses if strict or not m.soft]
    for miss in misses:
        if miss.soft and not strict:
            print(f"export: warning: {miss.text} (export.strict: true makes this fail the "
                  "stage)", file=sys.stderr)
    if failing:
        raise UserError("missed bounds: " + "; ".join(failing))
