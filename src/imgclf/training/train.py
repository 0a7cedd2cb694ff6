"""The train stage: data/prepared -> models/model.keras, with DVCLive learning curves.

A model with a pretrained backbone trains in two phases: the new head on the frozen
backbone (``train.epochs``), then the top of the backbone too at a lower rate
(``train.fine_tune``). ``imgclf train`` hands ``run`` the W&B tracker's epoch callback
and logs the model it returns as an artifact: this stage imports no tracking code but
DVCLive's, whose files are its outputs.

With ``train.strategy`` several devices or processes train one model together (see
``imgclf.training.distribute``); every process runs this same code, and only the
chief writes the model, the learning curves and the W&B run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from imgclf.data.records import make_dataset
from imgclf.data.shards import ShardsMeta, read_meta
from imgclf.models.architectures import augmentation, build_model, unfreeze_top
from imgclf.models.saving import ModelInfo, save_model
from imgclf.models.weights import weights_path
from imgclf.params import ModelParams, OodParams, TrainParams
from imgclf.training.balance import class_weights
from imgclf.training.cached import cached_feeds
from imgclf.training.distribute import Task, current_task, make_strategy, weights_digest
from imgclf.training.fitting import Feed, Fitter
from imgclf.training.live import LiveCallback, open_live
from imgclf.training.ood_fit import fit_ood
from imgclf.training.optim import uses_one_hot


def configure_runtime(train: TrainParams) -> None:
    """Seeds, op determinism and precision, before any model or dataset is built."""
    keras.utils.set_random_seed(train.seed)  # Python, NumPy and TensorFlow generators
    if train.deterministic:
        # Same data, params and machine -> the same weights, bit for bit.
        tf.config.experimental.enable_op_determinism()
    if train.mixed_precision and tf.config.list_physical_devices("GPU"):
        # float16 only pays off on GPUs; on a CPU it would just be slower.
        keras.mixed_precision.set_global_policy("mixed_float16")


def backup_dir(model_path: Path, model_params: ModelParams, train: TrainParams,
               data: Path, task: Task | None = None, path: str = "full") -> Path:
    """Where an interrupted run keeps its per-epoch backups, keyed by what it trains.

    Beside the model but not a DVC output, so DVC leaves it alone when it reruns the
    stage; the key (params + the split's meta.json) means a backup is only ever
    resumed by the same training (``path``: "full" or "cached", which fit different
    models). The workers of a multi-worker run other than the
    chief each get their own folder: on a shared filesystem they would otherwise
    write the same files.
    """
    key = json.dumps([model_params.model_dump(), train.model_dump(),
                      (data / "meta.json").read_text(encoding="utf-8")]
                     + ([] if path == "full" else [path]), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    name = digest if task is None or task.chief else f"{digest}-worker{task.index}"
    return model_path.parent / ".train-backup" / name


@dataclass(frozen=True)
class Trained:
    """What the chief saved, for a tracker to log: the model's facts and the data's counts."""

    model: dict[str, Any]  # arch, class_names, image_size, parameters, train
    counts: dict[str, int]  # images per split


def run(model_params: ModelParams, train: TrainParams, data: str | os.PathLike[str],
        model_path: str | os.PathLike[str], live_dir: str | os.PathLike[str],
        pretrained: str | os.PathLike[str] = "data/pretrained",
        callbacks: Sequence[keras.callbacks.Callback] = (),
        features: str | os.PathLike[str] | None = None,
        ood: OodParams | None = None) -> Trained | None:
    """Train and save the model; the chief returns what it saved, other workers None.

    ``callbacks`` (e.g. a tracker's) run in the chief only, beside DVCLive's.
    ``features``: the features stage's output; where it serves (see
    ``imgclf.training.cached``) the phases train on it instead of the images.
    ``ood``: how the OOD score and its threshold are fitted at the end (``ood_fit``).
    """
    meta = read_meta(data)
    # First of all TensorFlow: MultiWorkerMirroredStrategy must be created before any
    # other op runs (it sets up the runtime's collective ops).
    strategy = make_strategy(train.strategy)
    task = current_task(train.strategy)
    configure_runtime(train)
    inputs = build_data(train, Path(data), meta, task)
    weights = weights_path(model_params, pretrained)
    model = build(model_params, train, meta, strategy, task, weights)
    with strategy.scope():
        cached = cached_feeds(model, model_params, train, features, meta)
    # Only the chief writes curves and W&B; the others see the same (all-reduced) logs.
    live = open_live(str(live_dir)) if task.chief else None
    # Endless: each epoch's order is drawn from (seed, epoch), so resuming repeats it.
    whole = Feed(model, inputs.train, inputs.val, inputs.steps, endless=True)
    fitter = Fitter(model, train, strategy, whole, inputs.class_weight,
                    [LiveCallback(live), *callbacks] if live is not None else [],
                    backup_dir(Path(model_path), model_params, train, Path(data), task,
                               "cached" if cached else "full"))
    head_phase(fitter, cached.head if cached else None)
    fine_tune_phase(fitter, weights, cached.top if cached else None)
    if live is not None:
        live.end()
    return save(fitter, model_params, meta, Path(model_path), task, Path(data),
                ood or OodParams())


@dataclass(frozen=True)
class Inputs:
    """What the model trains on: the train and val splits streamed, and the class weights."""

    train: Callable[[int], tf.data.Dataset]  # the train batches from this epoch on
    val: tf.data.Dataset
    steps: int  # train batches per epoch
    class_weight: dict[int, float] | None  # Keras' class_weight; None: all equal


def build_data(train: TrainParams, data: Path, meta: ShardsMeta, task: Task) -> Inputs:
    """The splits as ``train`` reads them (shuffled, one-hot, mixed up ...), and the
    class weights of ``train.class_weight``."""
    one_hot = uses_one_hot(train)

    def train_ds(first_epoch: int) -> tf.data.Dataset:
        return make_dataset(data, meta, "train", train.batch_size, shuffle=True,
                            seed=train.seed, one_hot=one_hot, mixup=train.augment.mixup,
                            workers=task.count, first_epoch=first_epoch)

    val_ds = make_dataset(data, meta, "val", train.batch_size, one_hot=one_hot)
    weighting = None
    if train.class_weight != "none":
        # The split stage counted each class's train images in its report.
        report = json.loads((data / "report.json").read_text(encoding="utf-8"))
        counts = np.array([report["counts"]["train"].get(c, 0) for c in meta.class_names])
        weighting = class_weights(counts, train.class_weight)
        print(f"train: class weights ({train.class_weight}): " + ", ".join(
            f"{meta.class_names[k]} {w:.3g}" for k, w in (weighting or {}).items()))
    return Inputs(train_ds, val_ds, -(-meta.counts["train"] // train.batch_size), weighting)


def build(model_params: ModelParams, train: TrainParams, meta: ShardsMeta,
          strategy: tf.distribute.Strategy, task: Task, weights: Path | None) -> keras.Model:
    """The model of ``model_params``, its variables mirrored on every replica; says what
    it trains and how."""
    with strategy.scope():  # the variables are created mirrored on every replica
        model = build_model(model_params, meta.image_size, len(meta.class_names),
                            augmentation(train.augment, train.seed), weights)
    print(f"train: {model_params.arch} model, {model.count_params():,} parameters, "
          f"{meta.counts['train']} train / {meta.counts['val']} val images of "
          f"{len(meta.class_names)} classes")
    if strategy.num_replicas_in_sync > 1 or task.count > 1:
        print(f"train: {train.strategy} strategy, {strategy.num_replicas_in_sync} replicas in "
              f"sync, worker {task.index} of {task.count}"
              f"{' (chief)' if task.chief else ''}; global batch {train.batch_size}")
    return model


def head_phase(fitter: Fitter, feed: Feed | None = None) -> None:
    """Train the new head (on the frozen backbone, if any; on pooled features, with
    ``feed``), or load it if an earlier, interrupted run finished this phase."""
    head_done, train = fitter.head_weights, fitter.train
    if head_done.exists():
        print(f"train: the head phase finished before; its weights come from {head_done}")
        with fitter.strategy.scope():
            fitter.model.load_weights(head_done)
    else:
        # Only the first phase warms up: fine-tuning starts from trained weights.
        fitter.fit(train.learning_rate, 0, train.epochs, "head", train.warmup_epochs, feed)


def fine_tune_phase(fitter: Fitter, weights: Path | None, feed: Feed | None = None) -> None:
    """Keep the head's weights, then train the top of the pretrained backbone too (on
    the activations at the cut, with ``feed``)."""
    fine_tune = fitter.train.fine_tune
    # Fine-tuning needs a pretrained backbone; for the other archs the phase is skipped,
    # so `-S model.arch=small` works without also editing train.fine_tune.
    if not fine_tune.epochs or weights is None:
        return
    head_done = fitter.head_weights
    tmp = head_done.with_name("partial-" + head_done.name)  # Keras wants .weights.h5
    fitter.model.save_weights(tmp)
    os.replace(tmp, head_done)
    n = unfreeze_top(fitter.model, fine_tune.layers)
    print(f"train: fine-tuning {n} backbone layers for {fine_tune.epochs} epochs "
          f"at learning rate {fine_tune.learning_rate:g}")
    fitter.fit(fine_tune.learning_rate, fitter.train.epochs, fine_tune.epochs, "fine_tune",
               feed=feed)


def save(fitter: Fitter, model_params: ModelParams, meta: ShardsMeta, model_path: Path,
         task: Task, data: Path, ood: OodParams) -> Trained | None:
    """Save the trained model (float32) with its OOD score as the chief, drop the
    backups; the chief returns what it saved."""
    model, train = fitter.model, fitter.train
    # The saved model computes in float32 whatever policy trained it.
    keras.mixed_precision.set_global_policy("float32")
    with fitter.strategy.scope():
        model, ood_info = fit_ood(model, data, meta, ood)
    # Workers that trained together hold the same weights; this line lets one check. Of
    # the saved model: the OOD score's constants included.
    print(f"train: final weights sha256 {weights_digest(model)} "
          f"(worker {task.index} of {task.count})")
    info = ModelInfo(meta.class_names, meta.image_size, ood_info)
    if task.chief:
        save_model(model, model_path, info)
    else:
        # Saving reads the metrics' per-replica state, an all-reduce every worker must
        # join; so the others save too, into a folder thrown away.
        with tempfile.TemporaryDirectory(prefix="imgclf-worker-") as tmp:
            save_model(model, Path(tmp) / "model.keras", info)
    shutil.rmtree(fitter.backups, ignore_errors=True)  # done: nothing left to resume
    if not task.chief:
        return None
    print(f"train: saved {model_path}")
    return Trained({"arch": model_params.arch, "class_names": meta.class_names,
                    "image_size": meta.image_size, "parameters": model.count_params(),
                    "train": train.model_dump()}, dict(meta.counts))
