"""``imgclf predict``: classify image files and folders with a saved model.

The images are prepared exactly as for training: :func:`imgclf.data.images.load_image`
(EXIF orientation, any colour mode to RGB, transparency on white, resize) at the image
size stored in the model file (:class:`imgclf.models.saving.ModelInfo`), so a model
file alone is enough. Files are decoded in a thread pool (Pillow releases the GIL
while decoding) one batch ahead of the model, which predicts batch by batch.

A file that cannot be used never stops the others: its ``Prediction`` carries the
reason instead, and :func:`run` returns 1 when any file failed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf import fsutil
from imgclf.data.images import ImageError, decode_image, load_image
from imgclf.data.layout import IMAGE_SUFFIXES, has_image_suffix, is_hidden
from imgclf.errors import UserError
from imgclf.fsutil import DECIMALS
from imgclf.inference.batch import score_batch
from imgclf.inference.options import BATCH_SIZE, FORMATS, TOP_K, Format
from imgclf.machine import usable_cores
from imgclf.params import Tta


@dataclass(frozen=True)
class Prediction:
    """One file's result: the top classes, or the reason it could not be used.

    ``unknown``: the image is none of the classes (its OOD score ``ood_score`` is above
    the model's threshold); ``predicted`` stays the top class. Both None for a model
    without the score.
    """

    path: str
    predicted: str | None = None
    confidence: float | None = None
    top_k: tuple[tuple[str, float], ...] = ()
    error: str | None = None
    unknown: bool | None = None
    ood_score: float | None = None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        row: dict[str, Any] = {"path": self.path, "predicted": self.predicted,
                               "confidence": self.confidence}
        if self.unknown is not None:
            row |= {"unknown": self.unknown, "ood_score": self.ood_score}
        return row | {"top_k": [[name, p] for name, p in self.top_k]}


@dataclass(frozen=True)
class Unknown:
    """How a score becomes the ``unknown`` flag: above ``threshold``."""

    scores: np.ndarray  # (N,) the OOD scores, NaN where a file could not be used
    threshold: float

    def row(self, i: int) -> tuple[bool, float]:
        score = float(self.scores[i])
        return bool(score > self.threshold), float(f"{score:.6g}")


# --- which files --------------------------------------------------------------------------


def find_images(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files to classify, in the order given.

    A folder contributes the files with an image extension (``imgclf.data.layout``)
    found in it recursively, sorted, skipping hidden files and folders (names starting
    with a dot). Anything else named is taken as it is, so a named file that is missing
    or not an image is reported rather than silently dropped.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(path)
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
            found += [Path(dirpath) / name for name in sorted(filenames)
                      if not is_hidden(name) and has_image_suffix(name)]
    return found


# --- decoding and predicting ----------------------------------------------------------------


Decoded = np.ndarray | str  # one image's (S, S, 3) uint8 pixels, or why it cannot be used


def decode_or_reason(source: str | os.PathLike[str] | bytes, size: int) -> Decoded:
    """The model's input pixels of an image file (or of its bytes), or the reason it
    cannot be used: an unusable file never stops the others."""
    try:
        return decode_image(source, size) if isinstance(source, bytes) else load_image(source, size)
    except ImageError as exc:
        return str(exc)


@dataclass(frozen=True)
class Usable:
    """A batch of decoded images, split into what the model gets and what it cannot."""

    pixels: np.ndarray | None  # (G, S, S, 3) float32: the usable images; None if none
    rows: list[int]  # their places in the batch
    errors: list[str | None]  # per image: the reason it cannot be used, None if usable

    @classmethod
    def of(cls, batch: Sequence[Decoded]) -> Usable:
        rows = [i for i, item in enumerate(batch) if not isinstance(item, str)]
        pixels = np.stack([batch[i] for i in rows]).astype(np.float32) if rows else None
        return cls(pixels, rows, [item if isinstance(item, str) else None for item in batch])


def fill_rows(n: int, rows: Sequence[int], probs: np.ndarray | None,
              n_classes: int = 0) -> np.ndarray:
    """``(n, C)`` float32: ``probs`` (``(len(rows), C)``) at ``rows``, NaN in the other
    rows (the images that could not be used); C is ``n_classes`` when ``probs`` is None."""
    out = np.full((n, n_classes if probs is None else probs.shape[1]), np.nan, np.float32)
    if probs is not None:
        out[list(rows)] = probs
    return out


def decoded_batches(paths: Sequence[Path], size: int, batch_size: int = BATCH_SIZE,
                    workers: int | None = None) -> Iterator[list[Decoded]]:
    """Yield each batch of ``paths`` decoded (arrays, or reasons), the next one decoding
    in a thread pool meanwhile."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    starts = range(0, len(paths), batch_size)
    workers = workers or min(8, usable_cores())
    with ThreadPoolExecutor(workers, thread_name_prefix="imgclf-decode") as pool:

        def submit(start: int) -> list[Future[Decoded]]:
            return [pool.submit(decode_or_reason, p, size)
                    for p in paths[start:start + batch_size]]

        pending = submit(0) if starts else []
        for start in starts:
            batch = [f.result() for f in pending]
            pending = submit(start + batch_size) if start + batch_size < len(paths) else []
            yield batch


def predict_paths(model: Any, paths: Sequence[Path], image_size: int,
                  batch_size: int = BATCH_SIZE, tta: Tta = "none",
                  ) -> tuple[np.ndarray, list[str | None]]:
    """Class probabilities of every file: ``(probs (N, C) float32, errors (N,))``.

    ``tta`` is the test-time augmentation of ``predict_batch``.

    ``errors[i]`` is None for a file that was predicted, else the reason it could not
    be read, and ``probs[i]`` is then all NaN.
    """
    probs, _, errors = score_paths(model, paths, image_size, batch_size, tta)
    return probs, errors


def score_paths(model: Any, paths: Sequence[Path], image_size: int,
                batch_size: int = BATCH_SIZE, tta: Tta = "none",
                ) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
    """:func:`predict_paths` with the OOD scores: ``(probs (N, C), scores (N,) or None
    for a model without the score, errors (N,))``; NaN rows where a file failed."""
    rows: list[int] = []
    outs: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    errors: list[str | None] = []
    for start, batch in zip(range(0, len(paths), batch_size),
                            decoded_batches(paths, image_size, batch_size), strict=True):
        usable = Usable.of(batch)
        errors += usable.errors
        if usable.pixels is not None:
            probs, score = score_batch(model, usable.pixels, tta)
            outs.append(probs)
            if score is not None:
                scores.append(score)
            rows += [start + i for i in usable.rows]
    # Nothing readable: (N, 0), as the number of classes comes from the model's output.
    probs_all = fill_rows(len(paths), rows, np.concatenate(outs) if outs else None)
    has_score = bool(scores) or (not outs and getattr(getattr(model, "info", None), "ood",
                                                      None) is not None)
    score_all = (fill_rows(len(paths), rows, np.concatenate(scores)[:, None] if scores
                           else None, 1)[:, 0] if has_score else None)
    return probs_all, score_all, errors


def to_predictions(paths: Sequence[str | os.PathLike[str]], probs: np.ndarray,
                   errors: Sequence[str | None], class_names: Sequence[str],
                   top_k: int = TOP_K, unknown: Unknown | None = None) -> list[Prediction]:
    """One :class:`Prediction` per file, with the ``top_k`` classes (at most all of them)
    and, given ``unknown`` (the scores and threshold), the ``unknown`` flag."""
    k = max(1, min(top_k, len(class_names)))
    out = []
    for i, (path, p, error) in enumerate(zip(paths, probs, errors, strict=True)):
        if error is not None:
            out.append(Prediction(str(path), error=error))
            continue
        order = np.argsort(-p, kind="stable")[:k]
        ranked = tuple((class_names[c], round(float(p[c]), DECIMALS)) for c in order.tolist())
        flag, score = unknown.row(i) if unknown is not None else (None, None)
        out.append(Prediction(str(path), ranked[0][0], ranked[0][1], ranked,
                              unknown=flag, ood_score=score))
    return out


# --- output ----------------------------------------------------------------------------------


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` for a person to read: a name that is not UTF-8 (Python holds its bytes as
    lone surrogates, see os.fsdecode) shows those bytes as ``\\xNN``, e.g. ``caf\\xe9.jpg``,
    instead of crashing a terminal's strict encoder."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def format_table(predictions: Sequence[Prediction]) -> str:
    """Aligned columns file, predicted, confidence, top-k of the files that were predicted.

    For people: file names as :func:`shown`. The CSV and JSON keep each name's own bytes.
    """
    done = [p for p in predictions if p.error is None]
    if not done:
        return ""
    k = max(len(p.top_k) for p in done)
    header = ("file", "predicted", "confidence", f"top {k}")
    # An unknown image shows its top class marked: "dogs (unknown)", none of the classes.
    rows = [(shown(p.path), (p.predicted or "") + (" (unknown)" if p.unknown else ""),
             f"{p.confidence:.4f}",
             ", ".join(f"{name} {prob:.3f}" for name, prob in p.top_k)) for p in done]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}"
             for r in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def format_csv(predictions: Sequence[Prediction]) -> str:
    """``path,predicted,confidence,unknown,ood_score,class_1,prob_1,...,class_k,prob_k,
    error`` (``unknown`` and ``ood_score`` empty for a model without the score).

    A path that is not UTF-8 stays as Python holds it (lone surrogates): written out with
    ``surrogateescape`` (:func:`print_results`, ``fsutil.write_text``) it is the file's
    name, byte for byte.
    """
    k = max((len(p.top_k) for p in predictions), default=0)
    ranks = [f"{name}_{i}" for i in range(1, k + 1) for name in ("class", "prob")]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "predicted", "confidence", "unknown", "ood_score", *ranks,
                     "error"])
    for p in predictions:
        cells = [cell for name, prob in p.top_k for cell in (name, prob)]
        cells += [""] * (2 * k - len(cells))
        flag = "" if p.unknown is None else str(p.unknown).lower()
        writer.writerow([p.path, p.predicted or "", "" if p.confidence is None else p.confidence,
                         flag, "" if p.ood_score is None else p.ood_score, *cells,
                         p.error or ""])
    return buf.getvalue()


def format_json(predictions: Sequence[Prediction]) -> str:
    """A list of ``{path, predicted, confidence, unknown, ood_score, top_k: [[class, p],
    ...]}`` (``unknown``, ``ood_score`` only for a model with the score) or
    ``{path, error}`` objects, in ASCII: a path that is not UTF-8 keeps its bytes as
    ``\\udcNN`` escapes (``os.fsencode(json.load(f)[i]["path"])`` is the name's bytes)."""
    objects = [json.dumps(p.to_json(), allow_nan=False) for p in predictions]
    return "[\n" + ",\n".join(f"  {o}" for o in objects) + ("\n]\n" if objects else "]\n")


FORMATTERS = {"table": format_table, "csv": format_csv, "json": format_json}


def print_results(text: str) -> None:
    """Write ``text`` to stdout, any lone surrogates (file names that are not UTF-8) as
    the bytes they stand for, where a terminal's strict encoder would raise."""
    out = sys.stdout
    out.flush()
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a stream without bytes underneath (e.g. io.StringIO): text it is
        out.write(text)
    else:
        buffer.write(text.encode(out.encoding or "utf-8", "surrogateescape"))
    (buffer or out).flush()  # before the error lines, when both go to one terminal


# --- the command ------------------------------------------------------------------------------


def run(paths: Sequence[str | os.PathLike[str]], model_path: str | os.PathLike[str],
        top_k: int = TOP_K, batch_size: int = BATCH_SIZE, fmt: Format = "table",
        output: str | os.PathLike[str] | None = None, allow_unsafe_model: bool = False,
        tta: Tta = "none", unknown_threshold: float | None = None,
        explain: str | os.PathLike[str] | None = None) -> int:
    """Predict ``paths`` and print (or write to ``output``) the results; 1 if any failed.

    ``explain``, a folder: each predicted file's heatmap of its predicted class goes
    there too (``imgclf.inference.heatmap_files``; a ``.keras`` model only).

    ``allow_unsafe_model`` loads a model file that carries code (see ``load_model``);
    ``tta`` is the test-time augmentation (``evaluate.tta`` of params.yaml, from the CLI);
    ``unknown_threshold`` overrides the model file's OOD threshold.
    """
    if top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if fmt not in FORMATTERS:
        raise UserError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    files = find_images(paths)
    if not files:
        raise UserError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in "
                        f"{', '.join(map(str, paths))}")
    if output is not None:  # before the work, not once the results would be lost
        fsutil.check_writable(output, flag="--output")
    _check_explain(model_path, explain)
    # Any format (.keras, SavedModel, .tflite, .onnx); TensorFlow only once the input is fine.
    from imgclf.inference.runtimes import load_runtime

    model = load_runtime(model_path, allow_unsafe=allow_unsafe_model)
    info = model.info
    probs, scores, errors = score_paths(model, files, info.image_size, batch_size, tta)
    if probs.shape[1] not in (0, len(info.class_names)):
        raise UserError(f"{model_path}: the model gives {probs.shape[1]} scores but names "
                        f"{len(info.class_names)} classes; retrain it")
    threshold = info.unknown_threshold(unknown_threshold)
    unknown = Unknown(scores, threshold) if scores is not None and threshold is not None \
        else None
    predictions = to_predictions(files, probs, errors, info.class_names, top_k, unknown)
    failed = [p for p in predictions if p.error is not None]
    text = FORMATTERS[fmt](predictions)
    if output is None:
        print_results(text)
    else:
        fsutil.write_text(output, text)
    if fmt == "table":  # csv and json hold the errors in their rows
        for p in failed:
            print(f"imgclf predict: {shown(p.path)}: {p.error}", file=sys.stderr)
    _explain(model_path, files, predictions, info.class_names, explain, batch_size,
             allow_unsafe_model)
    if output is not None:
        flagged = sum(bool(p.unknown) for p in predictions)
        print(f"predict: {len(predictions) - len(failed)} predicted, {len(failed)} failed "
              f"({flagged} unknown: none of the classes); results in {shown(output)}",
              file=sys.stderr)
    return 1 if failed else 0


def _check_explain(model_path: str | os.PathLike[str],
                   out: str | os.PathLike[str] | None) -> None:
    """With ``--explain``: a .keras model and a folder that can be made (before any work)."""
    if out is not None:
        from imgclf.inference.heatmap_files import check_explainable

        check_explainable(model_path, out)


def _explain(model_path: str | os.PathLike[str], files: Sequence[Path],
             predictions: Sequence[Prediction], class_names: Sequence[str],
             out: str | os.PathLike[str] | None, batch_size: int, allow_unsafe: bool) -> None:
    """With ``--explain``: the predicted files' heatmaps of their predicted classes into
    ``out``, and a line saying where."""
    if out is None:
        return
    from imgclf.inference.heatmap_files import explain_files

    done = [(path, list(class_names).index(p.predicted or ""))
            for path, p in zip(files, predictions, strict=True) if p.error is None]
    written = explain_files(model_path, [path for path, _ in done], [c for _, c in done], out,
                            batch_size, allow_unsafe)
    print(f"predict: {len(written)} heatmaps (each picture beside its predicted class's "
          f"heatmap) in {shown(out)}, listed in {shown(Path(out) / 'index.csv')}",
          file=sys.stderr)
