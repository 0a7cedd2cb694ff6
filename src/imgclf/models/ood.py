"""Out-of-distribution (OOD) scores, their threshold and their figures, in NumPy.

Every score is *higher = less like the training classes*. From the penultimate
features ``f`` (B, d), the input of the ``probabilities`` layer, and that layer's
``kernel`` (d, C) and ``bias`` (C,):

* ``msp``: ``1 - max softmax`` (Hendrycks & Gimpel 2017);
* ``energy``: ``-logsumexp(logits)`` (Liu et al. 2020);
* ``mahalanobis``: the Mahalanobis distance of ``f`` to the mean of its predicted class
  under one covariance shared by the classes (Lee et al. 2018), in the top
  :data:`PCA_DIMS` principal directions of the within-class scatter (``d * PCA_DIMS``
  weights in-graph, not ``d * d``; the directions of least spread are the ones float16
  and int8 blur); ``mahalanobis_min``, the distance to the nearest class mean, is
  measured beside it;
* ``knn``: the distance of the L2-normalised ``f`` to its :data:`KNN_K`-th nearest
  normalised training feature (Sun et al. 2022); measured, never shipped (the file would
  have to carry the training features).

``imgclf.models.ood_layer`` computes the shipped ones in the graph, so every export
format gives the score itself. The generated out-of-domain images (noise, flat colours,
text, heavy crops) are made here too: the export and ood stages both score them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

METHODS = ("msp", "energy", "mahalanobis", "mahalanobis_min", "knn")
SHIPPABLE = ("msp", "energy", "mahalanobis")  # computed in-graph by OODScore
PCA_DIMS = 64  # principal directions of the shared covariance kept exactly
SHRINK = 0.1  # covariance += SHRINK * mean variance * I: few images, many dimensions
KNN_K = 5
TPR = 0.95  # FPR is measured where this share of the known images is kept
GENERATED_KINDS = ("noise", "flat", "text", "crops")
CROP_SIDE = 0.25  # a heavy crop keeps a square a quarter of the side (1/16 of the area)


@dataclass(frozen=True)
class Gaussian:
    """Class means and the shared covariance, as the in-graph layer holds them.

    ``projection`` (d, k): ``(f - mean) @ projection`` has unit variance within each
    class along each of the top ``k`` principal directions; ``means`` (C, d).
    """

    projection: np.ndarray
    means: np.ndarray


def fit_gaussian(features: np.ndarray, labels: np.ndarray, n_classes: int,
                 dims: int = PCA_DIMS) -> Gaussian:
    """The :class:`Gaussian` of ``features`` (N, d) with class ``labels`` (N,).

    ``k = min(dims, d, N - C)`` directions (no more than the images span); the
    covariance is shrunk towards its mean variance (:data:`SHRINK`), so that directions
    with little spread in few training images do not get an almost infinite weight.
    """
    f = np.asarray(features, np.float64)
    d = f.shape[1]
    means = np.stack([f[labels == c].mean(0) if np.any(labels == c) else f.mean(0)
                      for c in range(n_classes)])
    r = f - means[labels]
    cov = r.T @ r / len(f)
    cov += SHRINK * max(np.trace(cov) / d, 1e-12) * np.eye(d)
    var, vec = np.linalg.eigh(cov)  # ascending
    k = max(1, min(dims, d, len(f) - n_classes))  # no direction the images do not span
    return Gaussian((vec[:, -k:] / np.sqrt(var[-k:])).astype(np.float32),
                    means.astype(np.float32))


def mahalanobis(features: np.ndarray, g: Gaussian, probs: np.ndarray) -> np.ndarray:
    """``(B,)`` the squared whitened distance of each row to the mean of its predicted
    class, the means weighed by the class ``probs`` (B, C): for a confident prediction
    the Mahalanobis distance to that class's mean (what ``OODScore`` computes)."""
    f = np.asarray(features, np.float64)
    return (((f - np.asarray(probs, np.float64) @ g.means) @ g.projection) ** 2).sum(1)


def mahalanobis_min(features: np.ndarray, g: Gaussian) -> np.ndarray:
    """``(B,)`` the squared whitened distance to the nearest class mean (Lee et al.);
    measured beside :func:`mahalanobis`, not shipped (int8 cannot resolve it)."""
    f = np.asarray(features, np.float64)
    return np.min([(((f - m) @ g.projection) ** 2).sum(1) for m in g.means], axis=0)


def logsumexp(logits: np.ndarray) -> np.ndarray:
    top = logits.max(1, keepdims=True)
    return (top + np.log(np.exp(logits - top).sum(1, keepdims=True)))[:, 0]


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(logits - logsumexp(logits)[:, None])


def msp(logits: np.ndarray) -> np.ndarray:
    return 1.0 - np.exp(logits.max(1) - logsumexp(logits))


def energy(logits: np.ndarray) -> np.ndarray:
    return -logsumexp(logits)


def knn(features: np.ndarray, bank: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """``(B,)`` distance of each normalised row to its ``k``-th nearest row of ``bank``."""
    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    sims = unit(features) @ unit(bank).T
    k = min(k, sims.shape[1])
    kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
    return np.sqrt(np.maximum(2 - 2 * kth, 0))


@dataclass(frozen=True)
class Reference:
    """What the scores are computed against: the head, the Gaussian, the kNN bank."""

    kernel: np.ndarray  # (d, C)
    bias: np.ndarray  # (C,)
    gaussian: Gaussian
    bank: np.ndarray | None = None  # (M, d) training features, for knn

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, np.float64) @ self.kernel + self.bias

    def scores(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """``{method: (B,) scores}`` for every method this reference can compute."""
        logits = self.logits(features)
        table: dict[str, Callable[[], np.ndarray]] = {
            "msp": lambda: msp(logits), "energy": lambda: energy(logits),
            "mahalanobis": lambda: mahalanobis(features, self.gaussian, softmax(logits)),
            "mahalanobis_min": lambda: mahalanobis_min(features, self.gaussian)}
        if self.bank is not None:
            table["knn"] = lambda: knn(features, self.bank)
        return {m: fn() for m, fn in table.items()}


# --- threshold and figures -----------------------------------------------------------------


def fit_threshold(scores: np.ndarray, keep_rate: float) -> float:
    """The score at or below which ``keep_rate`` of ``scores`` (known images) lie."""
    return float(np.quantile(np.asarray(scores, np.float64), keep_rate, method="higher"))


def score_stats(scores: np.ndarray) -> dict[str, float]:
    s = np.asarray(scores, np.float64)
    return {"n": float(len(s)), "mean": float(s.mean()), "std": float(s.std()),
            "p50": float(np.quantile(s, 0.5)), "p95": float(np.quantile(s, 0.95)),
            "p99": float(np.quantile(s, 0.99)), "max": float(s.max())}


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """P(an unknown image scores above a known one), ties counting half (Mann-Whitney)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([known, unknown]).astype(np.float64))  # ties: mean rank
    n_k, n_u = len(known), len(unknown)
    return float((ranks[n_k:].sum() - n_u * (n_u + 1) / 2) / (n_k * n_u))


def fpr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr: float = TPR) -> float:
    """The share of unknown images kept where ``tpr`` of the known ones are kept."""
    return float(np.mean(np.asarray(unknown) <= fit_threshold(known, tpr)))


def detection(known: np.ndarray, unknown: np.ndarray) -> dict[str, float]:
    return {"auroc": auroc(known, unknown), "fpr95": fpr_at_tpr(known, unknown)}


def keep_check(scores: np.ndarray, correct: np.ndarray, threshold: float,
               keep_rate: float) -> dict[str, float | int | bool]:
    """The keep-rate check on a known split: kept share at least ``keep_rate`` minus two
    standard errors, and the accuracy on the kept images at least the overall one."""
    kept = np.asarray(scores) <= threshold
    n = len(kept)
    se = float(np.sqrt(keep_rate * (1 - keep_rate) / n)) if n else 0.0
    share = float(kept.mean()) if n else float("nan")
    overall = float(np.mean(correct)) if n else float("nan")
    on_kept = float(np.mean(correct[kept])) if kept.any() else float("nan")
    return {"threshold": float(threshold), "keep_rate": keep_rate, "n": n,
            "unknown": int(n - kept.sum()), "kept_share": share, "standard_error": se,
            "accuracy": overall, "kept_accuracy": on_kept,
            "kept_share_ok": bool(share >= keep_rate - 2 * se),
            "kept_accuracy_ok": bool(on_kept >= overall)}


# --- generated out-of-domain images -----------------------------------------------------------


WORDS = ("invoice", "total", "hello", "2026", "meeting", "EXIT", "page 3", "loading")


def generated_images(size: int, per_kind: int, seed: int,
                     known: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{kind: (per_kind, size, size, 3) uint8}`` for each of :data:`GENERATED_KINDS`:
    uniform noise, flat colours, text on a plain ground, and heavy crops (a square a
    quarter of the side, scaled up) of ``known`` images (N, size, size, 3), left out
    when ``known`` is None."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    out = {"noise": rng.integers(0, 256, (per_kind, size, size, 3), dtype=np.uint8),
           "flat": np.broadcast_to(rng.integers(0, 256, (per_kind, 1, 1, 3), dtype=np.uint8),
                                   (per_kind, size, size, 3)).copy()}
    font = ImageFont.load_default(size=max(8, size // 7))
    texts = []
    for _ in range(per_kind):
        ground = tuple(int(v) for v in rng.integers(180, 256, 3))
        img = Image.new("RGB", (size, size), ground)
        draw = ImageDraw.Draw(img)
        for line in range(4):
            word = " ".join(rng.choice(WORDS, 2))
            draw.text((size // 16, line * size // 4 + size // 16), word, fill=(20, 20, 20),
                      font=font)
        texts.append(np.asarray(img))
    out["text"] = np.stack(texts)
    if known is not None and len(known):
        side = max(2, int(size * CROP_SIDE))
        crops = []
        for i in rng.integers(0, len(known), per_kind):
            y, x = rng.integers(0, size - side + 1, 2)
            patch = Image.fromarray(np.asarray(known[i], np.uint8)[y:y + side, x:x + side])
            crops.append(np.asarray(patch.resize((size, size), Image.Resampling.BILINEAR)))
        out["crops"] = np.stack(crops)
    return out
