"""The ood stage: how well the OOD score tells images of no known class, measured.

Two protocols, written to ``metrics/ood.json`` (AUROC and FPR at 95% TPR of every
score of ``imgclf.models.ood``, higher AUROC and lower FPR better):

* **leave one class out** (``loco``), on the features stage's embeddings (the pooled
  backbone output, ``S-embed.npy``): for each class in turn (at most
  ``ood.loco_classes``, sampled with ``ood.seed``) a small head, multinomial logistic
  regression, is trained on the train embeddings of the *other* classes, the Gaussian
  and kNN bank fitted on them too; the test images of the known classes are the
  in-distribution set, the left-out class's the unknown one. A model without a
  pretrained backbone has no embeddings: the protocol is skipped, saying why.
* **generated out-of-domain images** (``generated``): the trained model itself, the
  score it ships (``ood_score``) and the others computed from its penultimate
  features, on noise, flat colours, text and heavy crops against the test split; with
  the share of each kind its fitted threshold flags.

``keep`` is the keep-rate check of the shipped score on the test split: the kept share
at least ``keep_rate`` minus two standard errors, the accuracy on the kept images at
least the overall accuracy (one model call per image, as the exported file is used).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from imgclf import fsutil
from imgclf.data.shards import SplitImages, read_meta, read_split
from imgclf.models.ood import (
    GENERATED_KINDS,
    Reference,
    detection,
    fit_gaussian,
    generated_images,
    keep_check,
)
from imgclf.params import OodParams
from imgclf.training.caching import read_features

LOCO_TRAIN, LOCO_TEST = "train", "test"
KNN_BANK = 1000  # training embeddings the kNN score compares with, at most (evenly spread)
# Train images run through the model for the kNN bank of the generated-image figures:
# fewer, as each is a forward pass of the whole model.
MODEL_BANK = 300
BATCH = 64
DECIMALS = 4


def _bank(features: np.ndarray) -> np.ndarray:
    pick = np.unique(np.linspace(0, len(features) - 1, min(KNN_BANK, len(features))).astype(int))
    return features[pick]


def head_of(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel (d, K), bias (K,))`` of a logistic-regression head on ``x`` (N, d) and
    labels ``y`` (N,) in ``0..K-1``; for two classes the one logit split in +-1/2, so the
    softmax of the two is the logistic's probability."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(max_iter=1000, random_state=seed).fit(x, y)
    kernel, bias = fit.coef_.T, fit.intercept_
    if kernel.shape[1] == 1:
        kernel, bias = np.hstack([-kernel, kernel]) / 2, np.array([-bias[0], bias[0]]) / 2
    return kernel, bias


def left_out_classes(n_classes: int, most: int, seed: int) -> list[int]:
    """The classes left out in turn: all, or ``most`` of them drawn with ``seed``."""
    if n_classes <= most:
        return list(range(n_classes))
    return sorted(np.random.default_rng(seed).choice(n_classes, most, replace=False).tolist())


def loco(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
         class_names: list[str], params: OodParams) -> dict[str, Any]:
    """Leave-one-class-out figures on embeddings ``(N, d)`` and labels ``(N,)``."""
    per_class: dict[str, dict[str, dict[str, float]]] = {}
    for c in left_out_classes(len(class_names), params.loco_classes, params.seed):
        keep = train_y != c
        remap = np.cumsum(np.arange(len(class_names)) != c) - 1  # old label -> new
        x, y = train_x[keep], remap[train_y[keep]]
        kernel, bias = head_of(x, y, params.seed)
        ref = Reference(kernel, bias, fit_gaussian(x, y, len(class_names) - 1), _bank(x))
        scores = ref.scores(test_x)
        known = test_y != c
        per_class[class_names[c]] = {m: detection(s[known], s[~known])
                                     for m, s in scores.items()}
    return {"classes": list(per_class), "per_class": per_class, "mean": _mean(per_class)}


def _mean(groups: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """The mean of each method's figures over ``groups`` (classes or kinds)."""
    methods = next(iter(groups.values())).keys()
    return {m: {k: float(np.mean([g[m][k] for g in groups.values()])) for k in ("auroc", "fpr95")}
            for m in methods}


def loco_of_features(folder: str | os.PathLike[str], class_names: list[str],
                     params: OodParams) -> dict[str, Any]:
    """:func:`loco` on the features stage's embeddings in ``folder``, or why not."""
    features = read_features(folder)
    if features is None or "embed" not in features.meta:
        return {"skipped": f"{folder} holds no embeddings (a model without a pretrained "
                           "backbone; see docs/ood.md)"}

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(features.array(split, "embed"), np.float32),
                np.asarray(features.array(split, "labels")))

    return loco(*arrays(LOCO_TRAIN), *arrays(LOCO_TEST), class_names, params)


def _outputs(model: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(penultimate features (N, d), probs (N, C), shipped scores (N,))`` in batches."""
    import keras

    from imgclf.models.ood_layer import penultimate

    both = keras.Model(model.inputs[0], [penultimate(model), *model.outputs])
    outs = [both.predict_on_batch(images[i:i + BATCH].astype(np.float32))
            for i in range(0, len(images), BATCH)]
    return tuple(np.concatenate([np.asarray(o[j]) for o in outs]) for j in range(3))  # type: ignore[return-value]


def generated(model: Any, threshold: float, data: str | os.PathLike[str],
              params: OodParams) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """The generated-image figures of the scored Keras ``model``, and ``(probs (N, C),
    shipped scores (N,))`` of the test split."""
    from imgclf.models.ood_layer import reference_of

    test, _ = read_split(data, LOCO_TEST)
    train = SplitImages(data, LOCO_TRAIN)
    spread = np.unique(np.linspace(0, len(train) - 1, min(MODEL_BANK, len(train))).astype(int))
    bank = _outputs(model, np.stack([train[int(i)] for i in spread]))[0]
    ref = reference_of(model)
    ref = Reference(ref.kernel, ref.bias, ref.gaussian, bank)
    f_test, p_test, s_test = _outputs(model, test)
    known = ref.scores(f_test) | {"shipped": s_test}
    kinds: dict[str, dict[str, Any]] = {}
    for kind, images in generated_images(test.shape[1], params.generated, params.seed,
                                         test).items():
        f, _, shipped = _outputs(model, images)
        scores = ref.scores(f) | {"shipped": shipped}
        kinds[kind] = {m: detection(known[m], s) for m, s in scores.items()}
        kinds[kind]["flagged"] = float(np.mean(shipped > threshold))
    figures = {"kinds": list(kinds), "per_kind": kinds,
               "mean": _mean({k: {m: v for m, v in row.items() if m != "flagged"}
                              for k, row in kinds.items()}),
               "flagged": float(np.mean([row["flagged"] for row in kinds.values()]))}
    return figures, (p_test, s_test)


def run(params: OodParams, features: str | os.PathLike[str], data: str | os.PathLike[str],
        model_path: str | os.PathLike[str], metrics_path: str | os.PathLike[str]) -> None:
    """Write ``metrics_path``: the leave-one-class-out, generated-image and keep-rate
    figures of the model at ``model_path``."""
    from imgclf.errors import UserError
    from imgclf.models.saving import load_model

    meta = read_meta(data)
    model, info = load_model(model_path)
    if info.ood is None:
        raise UserError(f"{model_path} has no OOD score (trained before it existed); "
                        "retrain it: dvc repro train")
    figures, (probs, scores) = generated(model, info.ood.threshold, data, params)
    _, labels = read_split(data, LOCO_TEST)
    keep = keep_check(scores, probs.argmax(1) == labels, info.ood.threshold, info.ood.keep_rate)
    metrics = {"method": info.ood.method, "keep": keep, "generated": figures,
               "loco": loco_of_features(features, list(meta.class_names), params)}
    fsutil.write_json(metrics_path, _rounded(metrics))
    _summary(metrics, metrics_path)


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, DECIMALS) + 0.0
    return value


def _summary(metrics: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    method, keep = metrics["method"], metrics["keep"]
    gen = metrics["generated"]["mean"]["shipped"]
    loco = metrics["loco"]
    line = (f"ood: {method}: test kept {keep['kept_share']:.1%} (keep rate "
            f"{keep['keep_rate']:.0%}), kept accuracy {keep['kept_accuracy']:.4f} vs "
            f"{keep['accuracy']:.4f}; generated {', '.join(GENERATED_KINDS)}: AUROC "
            f"{gen['auroc']:.4f}, FPR@95 {gen['fpr95']:.4f}, flagged "
            f"{metrics['generated']['flagged']:.1%}")
    if "mean" in loco:
        m = loco["mean"].get(method, {})
        line += (f"; leave-one-class-out ({len(loco['classes'])} classes): AUROC "
                 f"{m.get('auroc', float('nan')):.4f}, FPR@95 {m.get('fpr95', float('nan')):.4f}")
    else:
        line += f"; leave-one-class-out skipped: {loco['skipped']}"
    print(f"{line}; metrics in {path}")
