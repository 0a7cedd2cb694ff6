import json
from pathlib import Path

import numpy as np
import pytest

from imgclf.data.shards import read_meta
from imgclf.evaluation.evaluate import predict_split
from imgclf.models.saving import load_model
from imgclf.params import ModelParams, TrainParams
from imgclf.training import train


def _val_accuracy(model_path: Path, prepared: Path) -> float:
    model, _ = load_model(model_path)
    y, probs = predict_split(model, prepared, read_meta(prepared), "val", 32)
    return float((probs.argmax(1) == y).mean())


def test_train_writes_model_and_learning_curves(tiny_model: Path, tiny_prepared: Path) -> None:
    live = tiny_model.parent / "live"
    metrics = json.loads((live / "metrics.json").read_text())
    assert {"train", "val"} <= metrics.keys()
    assert {"loss", "accuracy"} <= metrics["val"].keys()
    rows = (live / "plots/metrics/val/loss.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["step", "loss"]
    assert len(rows) >= 3  # header + one row per epoch (early stopping may cut it short)
    _model, info = load_model(tiny_model)
    assert info.class_names == read_meta(tiny_prepared).class_names
    assert info.image_size == 16
    assert _val_accuracy(tiny_model, tiny_prepared) > 0.8  # chance is 1/3


@pytest.mark.slow
@pytest.mark.parametrize("loss,optimizer", [("categorical_crossentropy", "sgd"),
                                            ("sparse_categorical_crossentropy", "rmsprop")])
def test_every_loss_and_optimizer_learns(tiny_prepared: Path, tmp_path: Path, loss: str,
                                         optimizer: str) -> None:
    params = TrainParams(loss=loss, optimizer=optimizer, epochs=4, batch_size=8,
                         learning_rate=0.003 if optimizer != "sgd" else 0.03,
                         label_smoothing=0.1 if loss == "categorical_crossentropy" else 0.0)
    train.run(ModelParams(arch="small"), params, tiny_prepared, tmp_path / "m.keras",
              tmp_path / "live")
    assert _val_accuracy(tmp_path / "m.keras", tiny_prepared) > 0.8


@pytest.mark.slow
@pytest.mark.realweights
def test_pretrained_backbone_trains_then_fine_tunes(tmp_path: Path, image_folder: object) -> None:
    from imgclf.data import split
    from imgclf.models import pretrained
    from imgclf.params import FineTuneParams, params_from_dict

    p = params_from_dict({"data": {"image_size": 32}, "model": {"arch": "mobilenet_v2",
                                                                  "alpha": 0.35}})
    image_folder(tmp_path / "raw", ["a", "b", "c"], per_class=12)  # type: ignore[operator]
    split.run(p.data, p.split, tmp_path / "raw", tmp_path / "prep")
    pretrained.run(p.model, tmp_path / "weights")
    params = TrainParams(epochs=2, batch_size=8, early_stopping_patience=0,
                         fine_tune=FineTuneParams(epochs=1, layers=20))
    train.run(p.model, params, tmp_path / "prep", tmp_path / "m.keras", tmp_path / "live",
              pretrained=tmp_path / "weights")
    rows = (tmp_path / "live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(rows) == 1 + 3  # both phases log into the same curve, epochs 0..2
    _model, info = load_model(tmp_path / "m.keras")
    assert info.class_names == ["a", "b", "c"] and info.image_size == 32


@pytest.mark.slow
def test_same_params_give_identical_weights_and_metrics(tiny_prepared: Path,
                                                         tmp_path: Path) -> None:
    from imgclf.evaluation import evaluate
    from imgclf.params import AugmentParams, EvaluateParams

    # Augmentation on: its random ops must be seeded too.
    params = TrainParams(epochs=2, batch_size=8, deterministic=True,
                         augment=AugmentParams(flip=True, rotation=0.05, zoom=0.1))
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        train.run(ModelParams(arch="small"), params, tiny_prepared, out / "m.keras",
                  out / "live")
        evaluate.run(EvaluateParams(), tiny_prepared, out / "m.keras", out / "eval.json",
                     out / "plots")
        runs.append(out)
    weights = [load_model(run / "m.keras")[0].get_weights() for run in runs]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (runs[0] / "eval.json").read_bytes() == (runs[1] / "eval.json").read_bytes()


def test_the_from_scratch_recipe_trains_deterministically(tmp_path: Path,
                                                          image_folder: object) -> None:
    # Every piece of recipes/from-scratch.yaml at once (compact, random resized crops,
    # mixup, warmup, cosine, AdamW, label smoothing, EMA): twice, identical weights.
    import yaml

    from imgclf.data import split
    from imgclf.params import DataParams, SplitParams, merge, params_from_dict

    raw = image_folder(tmp_path / "raw", ["a", "b", "c"], per_class=12)  # type: ignore[operator]
    split.run(DataParams(image_size=32), SplitParams(train=0.5, val=0.25, test=0.25, seed=0),
              raw, tmp_path / "prepared")
    recipe = yaml.safe_load((Path(__file__).parents[2] / "recipes" / "from-scratch.yaml")
                            .read_text())
    params = params_from_dict(merge(recipe, {
        "data": {"image_size": 32}, "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 6}}))
    assert params.train.augment.mixup > 0 and params.train.ema > 0
    digests = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        train.run(params.model, params.train, tmp_path / "prepared", out / "m.keras",
                  out / "live")
        digests.append([w.tobytes() for w in load_model(out / "m.keras")[0].get_weights()])
    assert digests[0] == digests[1]
