"""The features stage and train's cached path: the cache stands in exactly for the
frozen layers, within float16's precision."""

from __future__ import annotations

import json
import os
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


def test_a_model_without_a_backbone_still_gets_the_files_later_stages_depend_on(
        tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    # The audit lists the embed and labels files, not the folder, among its deps (so a
    # new cut reruns no audit); so they exist for any model: with 0 columns here.
    from imgclf.data import split
    from imgclf.training import features
    from imgclf.training.caching import EMBED_SPLITS, MARKER, read_features

    p = params_from_dict({"data": {"image_size": 16}, "model": {"arch": "small"}})
    image_folder(tmp_path / "raw", ["a", "b"], per_class=6, size=16)
    split.run(p.data, p.split, tmp_path / "raw", tmp_path / "prep")
    features.run(p.model, LAYERS, True, tmp_path / "prep", tmp_path / "none", tmp_path / "f")
    assert "model.arch: small" in (tmp_path / "f" / MARKER).read_text()
    assert read_features(tmp_path / "f") is None  # train takes the whole-model path
    from imgclf.data.shards import SplitImages

    for split_name in EMBED_SPLITS:
        labels = np.load(tmp_path / "f" / f"{split_name}-labels.npy")
        np.testing.assert_array_equal(labels, SplitImages(tmp_path / "prep", split_name).labels)
        assert np.load(tmp_path / "f" / f"{split_name}-embed.npy").shape == (len(labels), 0)
    stages = yaml.safe_load((Path(__file__).parents[2] / "dvc.yaml").read_text())["stages"]
    feature_deps = [d for d in stages["audit"]["deps"] if d.startswith("data/features")]
    assert sorted(feature_deps) == sorted(f"data/features/{s}-{kind}.npy"
                                          for s in EMBED_SPLITS for kind in ("embed", "labels"))


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
def test_embeddings_of_every_split_are_the_mirror_mean_whatever_the_cut_and_flip(
        backbone_data: dict[str, Path], tmp_path: Path) -> None:
    from imgclf.data.shards import read_split
    from imgclf.models.architectures import build_model
    from imgclf.models.cut import split_model
    from imgclf.models.weights import weights_path
    from imgclf.training import features
    from imgclf.training.caching import read_features

    model_params = ModelParams(arch="mobilenet_v2", alpha=0.35)
    # Another cut (block_14_add, not block_13_project_BN) and no flip.
    features.run(model_params, 20, False, backbone_data["prep"], backbone_data["weights"],
                 tmp_path / "other")
    cut30, cut20 = read_features(backbone_data["features"]), read_features(tmp_path / "other")
    assert cut30 is not None and cut20 is not None and cut30.meta["cut"] != cut20.meta["cut"]
    model = build_model(model_params, 64, 3, [], weights_path(model_params,
                                                              backbone_data["weights"]))
    bottom = split_model(model, LAYERS).bottom
    for split in ("train", "val", "test"):
        for kind in ("embed", "labels"):  # the same bytes: a consumer need not rerun
            assert ((backbone_data["features"] / f"{split}-{kind}.npy").read_bytes()
                    == (tmp_path / "other" / f"{split}-{kind}.npy").read_bytes()), split
        images, labels = read_split(backbone_data["prep"], split)
        embed = np.asarray(cut30.array(split, "embed"))
        assert embed.dtype == np.float16 and embed.shape == (len(images), 1280)
        np.testing.assert_array_equal(cut30.array(split, "labels"), labels)
        pooled = [bottom.predict(x.astype("float32"), verbose=0)[1]
                  for x in (images, images[:, :, ::-1])]
        # float16 rounding of a value of magnitude m is within m * 2**-11.
        np.testing.assert_allclose(embed, (pooled[0] + pooled[1]) / 2, rtol=1e-3, atol=1e-3)
    # The train mirror view kept for flip is the one the embedding averaged.
    np.testing.assert_array_equal(cut30.array("train", "pooled")[:, 0],
                                  cut20.array("train", "pooled")[:, 0])
    assert not (backbone_data["features"] / "test-cut.npy").exists()


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



@pytest.mark.slow
@pytest.mark.realweights
def test_two_workers_on_the_cache_train_the_one_process_model(
        backbone_data: dict[str, Path], tmp_path: Path,
        weights_digest: Callable[[str], str], free_ports: Callable[[int], list[int]]) -> None:
    # No dropout and plain SGD: split over two workers, the steps are those of one
    # process on whole batches, up to rounding.
    params = {"model": {"arch": "mobilenet_v2", "alpha": 0.35, "dropout": 0.0},
              "wandb": {"enabled": False},
              "train": {"optimizer": "sgd", "momentum": 0.0, "learning_rate": 0.05,
                        "epochs": 2, "batch_size": 8, "early_stopping_patience": 0,
                        "fine_tune": {"epochs": 1, "layers": LAYERS, "learning_rate": 0.01}}}
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
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
