"""The features stage and train's cached path: the cache stands in exactly for the
frozen layers, within float16's precision."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from imgclf.params import (
    AugmentParams,
    FineTuneParams,
    ModelParams,
    TrainParams,
    params_from_dict,
)
from imgclf.training.caching import train_blocker

LAYERS = 30  # the default: MobileNetV2's top 30 layers start inside block 14's residual,
# so the cut moves down to block_13_project_BN.
# float16 keeps 11 significant bits (relative error <= 2**-11 ~ 5e-4 per activation);
# carried through the top's layers to the softmax, it moves the probabilities by about
# 1e-4 here (measured), far below this bound; a wrong cut, view or batch-norm mode
# would move them by tenths.
PROB_TOLERANCE = 2e-3


def test_the_cache_is_refused_where_it_cannot_be_exact() -> None:
    model = ModelParams(arch="mobilenet_v2", alpha=0.35)
    plain = TrainParams()
    assert train_blocker(model, plain) is None
    assert "train.augment.rotation" in str(train_blocker(
        model, TrainParams(augment=AugmentParams(rotation=0.1))))
    assert "train.augment.crop" in str(train_blocker(
        model, TrainParams(augment=AugmentParams(crop=0.5))))
    assert "train.fine_tune.layers: 0" in str(train_blocker(
        model, TrainParams(fine_tune=FineTuneParams(layers=0))))
    assert "model.arch: small" in str(train_blocker(ModelParams(arch="small"), plain))
    assert "model.pretrained" in str(train_blocker(
        ModelParams(arch="mobilenet_v2", alpha=0.35, pretrained=False), plain))


@pytest.fixture(scope="module")
def backbone_data(tmp_path_factory: pytest.TempPathFactory,
                  image_folder: Callable[..., Path]) -> dict[str, Path]:
    """Prepared 64 px images of 3 classes, the real MobileNetV2 0.35 weights, and the
    features stage's output for them."""
    from imgclf.data import split
    from imgclf.models import pretrained
    from imgclf.training import features

    root = tmp_path_factory.mktemp("backbone")
    p = params_from_dict({"data": {"image_size": 64},
                          "model": {"arch": "mobilenet_v2", "alpha": 0.35}})
    image_folder(root / "raw", ["a", "b", "c"], per_class=14, size=64)
    split.run(p.data, p.split, root / "raw", root / "prep")
    pretrained.run(p.model, root / "weights")
    features.run(p.model, LAYERS, True, root / "prep", root / "weights", root / "features")
    return {"prep": root / "prep", "weights": root / "weights",
            "features": root / "features"}


@pytest.mark.slow
@pytest.mark.realweights
def test_saved_model_on_images_agrees_with_the_top_on_cached_activations(
        backbone_data: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from imgclf.data.shards import read_split
    from imgclf.models.cut import split_model
    from imgclf.models.saving import load_model
    from imgclf.training import train
    from imgclf.training.caching import read_features

    model = ModelParams(arch="mobilenet_v2", alpha=0.35)
    params = TrainParams(epochs=2, batch_size=8, early_stopping_patience=0,
                         fine_tune=FineTuneParams(epochs=1, layers=LAYERS))
    train.run(model, params, backbone_data["prep"], tmp_path / "m.keras", tmp_path / "live",
              backbone_data["weights"], features=backbone_data["features"])
    out = capsys.readouterr().out
    assert "on the cached features" in out and "whole model" not in out
    from imgclf.models.ood_layer import classifier_of

    scored, _info = load_model(tmp_path / "m.keras")
    saved = classifier_of(scored)  # the probabilities alone, without the OOD score
    images, _labels = read_split(backbone_data["prep"], "val")
    on_images = saved.predict(images.astype("float32"), verbose=0)
    cached = read_features(backbone_data["features"])
    assert cached is not None
    parts = split_model(saved, LAYERS)
    assert parts.cut == cached.meta["cut"] == "block_13_project_BN"
    activations = np.asarray(cached.array("val", "cut"))[:, 0].astype("float32")
    on_cache = parts.top.predict(activations, verbose=0)
    assert (on_images.argmax(1) == on_cache.argmax(1)).all()
    assert np.abs(on_images - on_cache).max() < PROB_TOLERANCE
    # The mirror view is the bottom applied to the mirrored image.
    mirrored = parts.bottom.predict(images[:4, :, ::-1].astype("float32"), verbose=0)
    train_cut = np.asarray(cached.array("train", "cut"))
    train_images, _ = read_split(backbone_data["prep"], "train")
    direct = parts.bottom.predict(train_images[:4, :, ::-1].astype("float32"), verbose=0)
    np.testing.assert_allclose(train_cut[:4, 1], direct[0], rtol=2e-3, atol=2e-3)
    assert mirrored[0].shape[1:] == train_cut.shape[2:]


@pytest.mark.slow
@pytest.mark.realweights
def test_a_random_rotation_falls_back_to_the_whole_model_saying_why(
        backbone_data: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from imgclf.training import train

    params = TrainParams(epochs=1, batch_size=8, early_stopping_patience=0,
                         augment=AugmentParams(rotation=0.1),
                         fine_tune=FineTuneParams(epochs=0, layers=LAYERS))
    train.run(ModelParams(arch="mobilenet_v2", alpha=0.35), params, backbone_data["prep"],
              tmp_path / "m.keras", tmp_path / "live", backbone_data["weights"],
              features=backbone_data["features"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "whole model" in line]
    assert lines == ["train: the whole model runs on every image in every epoch: "
                     "train.augment.rotation: 0.1 (random pixels each epoch, not cacheable)"]
    assert (tmp_path / "m.keras").is_file()


@pytest.mark.slow
@pytest.mark.realweights
def test_a_killed_cached_run_resumes_to_the_uninterrupted_runs_weights(
        backbone_data: dict[str, Path], tmp_path: Path,
        kill_and_resume: Callable[..., tuple[str, str]],
        weights_digest: Callable[[str], str]) -> None:
    params = {"model": {"arch": "mobilenet_v2", "alpha": 0.35}, "wandb": {"enabled": False},
              "train": {"epochs": 40, "batch_size": 8, "early_stopping_patience": 0,
                        "fine_tune": {"epochs": 2, "layers": LAYERS}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "imgclf", "train", "--data", str(backbone_data["prep"]),
           "--pretrained", str(backbone_data["weights"]),
           "--features", str(backbone_data["features"])]

    def args(name: str) -> list[str]:
        return [*cmd, "--model", f"{name}/model.keras", "--live", f"{name}/live"]

    straight, out = kill_and_resume(args, tmp_path, start_s=300)
    assert "resuming the head phase" in out and "Epoch 1/40" not in out
    # Same order from the resumed epoch on, same views: the same weights, bit for bit.
    assert weights_digest(out) == weights_digest(straight)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:  # all bound at once, so the ports differ
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow
@pytest.mark.realweights
def test_two_workers_on_the_cache_train_the_one_process_model(
        backbone_data: dict[str, Path], tmp_path: Path,
        weights_digest: Callable[[str], str]) -> None:
    # No dropout and plain SGD: split over two workers, the steps are those of one
    # process on whole batches, up to rounding.
    params = {"model": {"arch": "mobilenet_v2", "alpha": 0.35, "dropout": 0.0},
              "wandb": {"enabled": False},
              "train": {"optimizer": "sgd", "momentum": 0.0, "learning_rate": 0.05,
                        "epochs": 2, "batch_size": 8, "early_stopping_patience": 0,
                        "fine_tune": {"epochs": 1, "layers": LAYERS, "learning_rate": 0.01}}}
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    cmd = [sys.executable, "-m", "imgclf", "train", "--params", str(tmp_path / "params.yaml"),
           "--data", str(backbone_data["prep"]), "--pretrained", str(backbone_data["weights"]),
           "--features", str(backbone_data["features"]), "--model", "m.keras", "--live", "live"]
    outputs = []
    for strategy in ("multi_worker", "mirrored"):
        params["train"]["strategy"] = strategy
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        count = 2 if strategy == "multi_worker" else 1
        procs = []
        for i in range(count):
            (tmp_path / f"{strategy}{i}").mkdir()
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            procs.append(subprocess.Popen(
                cmd, cwd=tmp_path / f"{strategy}{i}", stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, env={**os.environ, "TF_CONFIG": config}))
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, out
            assert "on the cached features" in out, out
            outputs.append(out)
    workers = [weights_digest(out) for out in outputs[:2]]
    assert workers[0] == workers[1]  # the two workers agreed
    from imgclf.models.saving import load_model

    together = load_model(tmp_path / "multi_worker0" / "m.keras")[0]
    alone = load_model(tmp_path / "mirrored0" / "m.keras")[0]
    for a, b in zip(together.get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
