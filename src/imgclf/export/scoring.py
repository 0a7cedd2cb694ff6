"""How an exported model is measured: accuracy, agreement with Keras, latency, throughput.

Agreement is also counted on the images the Keras model is confident on alone (top
probability at least :data:`CONFIDENT`): a broken conversion changes those answers too,
while numeric wobble (float16 weights, int8 rounding) only flips near-ties.

Every function takes a runtime (anything with ``predict_on_batch(images) -> (B, C)``,
see ``imgclf.inference.runtimes``) and arrays, and returns numbers.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from imgclf.models.ood import auroc, fit_threshold, keep_check

WARMUP_CALLS = 3  # untimed calls first: the first calls of a runtime allocate and compile
CONFIDENT = 0.6  # Keras' top probability from which a changed answer means a broken format


def accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Fraction of ``(N,)`` labels that are the argmax of ``(N, C)`` probabilities."""
    return float(np.mean(probs.argmax(1) == y_true)) if len(y_true) else float("nan")


def agreement(probs: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of rows where two ``(N, C)`` probability arrays pick the same top class."""
    if probs.shape != reference.shape:
        raise ValueError(f"shapes differ: {probs.shape} vs {reference.shape}")
    return float(np.mean(probs.argmax(1) == reference.argmax(1))) if len(probs) else float("nan")


def compare(probs: np.ndarray, reference: np.ndarray) -> dict[str, float | int]:
    """How ``(N, C)`` probabilities differ from the Keras model's ``reference``:

    ``agreement`` (fraction of rows with the same top class), ``confident_disagreements``
    (rows where the reference's top probability is at least :data:`CONFIDENT` and the
    top class differs), ``confident_agreement`` (the agreement on those confident rows;
    1.0 when there are none) and ``max_prob_diff`` (the largest absolute difference of
    any probability).
    """
    agree = agreement(probs, reference)
    confident = reference.max(1) >= CONFIDENT if len(reference) else np.zeros(0, bool)
    same = probs.argmax(1) == reference.argmax(1)
    n_confident = int(confident.sum())
    wrong = int((confident & ~same).sum())
    return {"agreement": agree,
            "confident_agreement": 1.0 - wrong / n_confident if n_confident else 1.0,
            "confident_disagreements": wrong,
            "max_prob_diff": float(np.abs(probs - reference).max()) if len(probs) else 0.0}


def _scored(runtime: Any, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if hasattr(runtime, "predict_scored"):
        return runtime.predict_scored(pixels)
    return runtime.predict_on_batch(pixels), None


def predict_timed(runtime: Any, images: np.ndarray, batch_size: int,
                  ) -> tuple[np.ndarray, float, np.ndarray | None]:
    """``(probs (N, C) float32, images per second, OOD scores (N,) or None)`` of
    ``images`` (N, S, S, 3) in batches.

    One untimed call on the first batch comes first, so the figure is the steady rate.
    """
    pixels = np.asarray(images, dtype=np.float32)  # no copy of float32 pixels
    runtime.predict_on_batch(pixels[:batch_size])
    start = time.perf_counter()
    outs = [_scored(runtime, pixels[i:i + batch_size])
            for i in range(0, len(pixels), batch_size)]
    seconds = time.perf_counter() - start
    scores = None if outs[0][1] is None else np.concatenate([s for _, s in outs])
    return np.concatenate([p for p, _ in outs]), len(pixels) / seconds, scores


def scores_of(runtime: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    """``(N,)`` float64 OOD scores of ``images`` (N, S, S, 3), in batches."""
    pixels = np.asarray(images, dtype=np.float32)
    return np.concatenate([np.asarray(_scored(runtime, pixels[i:i + batch_size])[1],
                                      np.float64)
                           for i in range(0, len(pixels), batch_size)])


def ood_figures(runtime: Any, val: np.ndarray, test_scores: np.ndarray, correct: np.ndarray,
                generated: np.ndarray, keep_rate: float, batch_size: int,
                ) -> tuple[dict[str, float], np.ndarray]:
    """``(figures, val scores (V,))`` of a format's OOD score: its threshold fitted on
    the ``val`` images (V, S, S, 3) at ``keep_rate``; on the test split (``test_scores``
    (N,), ``correct`` (N,) bool) the kept share and the accuracy on the kept images; on
    the ``generated`` out-of-domain images (G, S, S, 3) the share flagged unknown and the
    AUROC against the test split."""
    val_scores = scores_of(runtime, val, batch_size)
    threshold = fit_threshold(val_scores, keep_rate)
    check = keep_check(test_scores, correct, threshold, keep_rate)
    gen = scores_of(runtime, generated, batch_size)
    return {"ood_threshold": threshold, "kept_share": check["kept_share"],
            "kept_accuracy": check["kept_accuracy"],
            "generated_unknown": float(np.mean(gen > threshold)),
            "generated_auroc": auroc(test_scores, gen)}, val_scores


def single_image_latency_ms(runtime: Any, images: np.ndarray, runs: int) -> tuple[float, float]:
    """``(median, 95th percentile)`` milliseconds of ``runs`` one-image calls, taking the
    images of ``images`` (N, S, S, 3) in turn, after :data:`WARMUP_CALLS` untimed ones."""
    pixels = np.asarray(images, dtype=np.float32)  # no copy of float32 pixels
    for i in range(WARMUP_CALLS):
        runtime.predict_on_batch(pixels[i % len(pixels)][None])
    times = np.empty(runs)
    for i in range(runs):
        one = pixels[i % len(pixels)][None]
        start = time.perf_counter()
        runtime.predict_on_batch(one)
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e3), float(np.percentile(times, 95) * 1e3)
