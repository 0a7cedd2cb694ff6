import keras
import numpy as np
import pytest

from imgclf.models.architectures import (
    CNN_SIZES,
    augmentation,
    build_layer_list,
    build_model,
)
from imgclf.params import (
    BACKBONES,
    Arch,
    AugmentParams,
    ConvLayer,
    FlattenLayer,
    ModelParams,
    params_from_dict,
)


def _count(model: keras.Model, cls: type) -> int:
    return sum(isinstance(layer, cls) for layer in model.layers)


@pytest.mark.parametrize("arch,convs,denses", [("small", 2, 1), ("medium", 3, 2), ("large", 4, 2)])
def test_named_cnns_have_the_original_shapes(arch: str, convs: int, denses: int) -> None:
    model = build_model(ModelParams(arch=arch), 32, 5)
    assert _count(model, keras.layers.Conv2D) == convs
    assert _count(model, keras.layers.Dense) == denses + 1  # + the softmax head
    assert _count(model, keras.layers.Dropout) == denses
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert out.shape == (2, 5)
    np.testing.assert_allclose(np.asarray(out).sum(1), 1, rtol=1e-5)


def test_every_arch_choice_is_buildable() -> None:
    # The params Literal and the builder must list the same architectures.
    # (The backbones are built one by one below.)
    from imgclf.models.architectures import BACKBONE_BUILDERS

    for arch in set(Arch.__args__) - set(BACKBONES):
        layers = [{"type": "conv", "filters": 2}] if arch == "custom" else []
        model = build_model(ModelParams(arch=arch, layers=layers, pretrained=False), 32, 2)
        assert model.output_shape == (None, 2), arch
    assert set(CNN_SIZES) <= set(Arch.__args__)
    assert set(BACKBONE_BUILDERS) == set(BACKBONES) <= set(Arch.__args__)


def test_custom_layers_from_params() -> None:
    params = params_from_dict({"model": {"arch": "custom", "layers": [
        {"type": "conv", "filters": 8}, {"type": "batch_norm"}, {"type": "max_pool"},
        {"type": "separable_conv", "filters": 16, "kernel": 5}, {"type": "dense", "units": 12},
        {"type": "dropout", "rate": 0.2}]}})
    model = build_model(params.model, 16, 3)
    assert _count(model, keras.layers.SeparableConv2D) == 1
    assert _count(model, keras.layers.Flatten) == 1  # inserted before the first dense layer
    assert model.output_shape == (None, 3)


def test_conv_only_list_gets_global_pooling() -> None:
    model = build_layer_list([ConvLayer(filters=4)], 16, 2)
    assert _count(model, keras.layers.GlobalAveragePooling2D) == 1


def test_augmentation_only_in_training() -> None:
    aug = augmentation(AugmentParams(flip=True, rotation=0.1, zoom=0.1, contrast=0.2), seed=0)
    assert len(aug) == 4
    model = build_layer_list([FlattenLayer()], 8, 2, aug)
    x = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)),
                                  np.asarray(model(x, training=False)))
    # The layers themselves: the identity in inference, a changed image in training.
    stack = keras.Sequential(aug)
    np.testing.assert_allclose(np.asarray(stack(x, training=False)), x, atol=1e-4)
    trained = np.asarray(stack(x, training=True))
    assert trained.shape == x.shape
    assert np.abs(trained - x).mean() > 1.0
    assert augmentation(AugmentParams(flip=False), seed=0) == []


def test_mobilenet_head_and_fine_tuning() -> None:
    from imgclf.models.architectures import BACKBONE, unfreeze_top

    model = build_model(ModelParams(arch="mobilenet_v2", alpha=0.35, pretrained=False), 32, 4)
    assert model.output_shape == (None, 4)
    base = model.get_layer(BACKBONE)
    assert base.trainable  # from scratch: everything trains
    n = unfreeze_top(model, 10)
    trainable = [layer for layer in base.layers if layer.trainable]
    assert len(trainable) == n and 0 < n <= 10
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)


def test_compact_is_a_residual_cnn_with_batch_norm_and_global_pooling() -> None:
    model = build_model(ModelParams(arch="compact", dropout=0.3), 96, 3)
    assert _count(model, keras.layers.Add) == 3  # one residual block per stage
    assert _count(model, keras.layers.BatchNormalization) == _count(model, keras.layers.Conv2D)
    assert _count(model, keras.layers.GlobalAveragePooling2D) == 1
    assert _count(model, keras.layers.Flatten) == 0
    assert model.get_layer(index=-2).rate == 0.3  # model.dropout before the head
    assert 1_800_000 < model.count_params() < 2_000_000
    # The stride-2 stem and four poolings: 96 px reach the last stage at 3x3.
    last_add = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)][-1]
    assert last_add.output.shape[1:3] == (3, 3)
    out = np.asarray(model(np.zeros((2, 96, 96, 3), np.float32)))
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out.sum(1), 1, rtol=1e-5)


@pytest.mark.parametrize("arch", BACKBONES)
def test_backbone_builds_predicts_fine_tunes_and_reloads_safely(arch: str, tmp_path) -> None:
    # Random weights at 32 px: the real ones are fetched by the pretrained stage.
    from imgclf.models.architectures import BACKBONE, unfreeze_top
    from imgclf.models.saving import ModelInfo, load_model, save_model

    model = build_model(ModelParams(arch=arch, alpha=0.35, pretrained=False), 32, 3)
    assert model.output_shape == (None, 3)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    out = np.asarray(model(x, training=False))
    np.testing.assert_allclose(out.sum(1), 1, rtol=1e-5)
    base = model.get_layer(BACKBONE)
    base.trainable = False  # as with ImageNet weights, before fine-tuning
    n = unfreeze_top(model, 12)
    trainable = [layer for layer in base.layers if layer.trainable]
    assert len(trainable) == n and 0 < n <= 12
    assert all(layer in base.layers[-12:] for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    # Safe mode refuses code in a file; every backbone must load without it.
    save_model(model, tmp_path / "m.keras", ModelInfo(["a", "b", "c"], 32))
    loaded, info = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), out, atol=1e-5)
    assert info.image_size == 32


@pytest.mark.parametrize("arch,scaled", [("resnet50_v2", True), ("mobilenet_v2", True),
                                         ("efficientnetv2_b0", False)])
def test_preprocessing_is_inside_the_model(arch: str, scaled: bool) -> None:
    # Fed raw 0..255 pixels, each backbone gets its own input range: ours rescales to
    # -1..1 before a backbone without its own preprocessing, never twice.
    model = build_model(ModelParams(arch=arch, alpha=0.35, pretrained=False), 32, 2)
    rescaling = [layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    assert len(rescaling) == int(scaled)
    if scaled:
        assert rescaling[0].scale == pytest.approx(1 / 127.5)
        assert rescaling[0].offset == -1.0


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "efficientnetv2_b0"])
def test_backbone_loads_a_weights_file_in_keras_format_and_freezes(arch: str, tmp_path) -> None:
    # A file in the layout of Keras' no-top ImageNet files (legacy HDF5), written from
    # a backbone with random weights: build_model must load exactly those and freeze them.
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    from imgclf.models.architectures import BACKBONE, BACKBONE_BUILDERS

    keras.utils.set_random_seed(7)
    source = BACKBONE_BUILDERS[arch].build(input_shape=(32, 32, 3), include_top=False,
                                           weights=None, pooling="avg")
    path = tmp_path / "weights_no_top.h5"
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, source)
    keras.utils.set_random_seed(8)  # other random weights, unless the file's are loaded
    model = build_model(ModelParams(arch=arch, pretrained=True), 32, 3, weights=path)
    base = model.get_layer(BACKBONE)
    assert not base.trainable and base.count_params() == source.count_params()
    for got, want in zip(base.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert model.count_params() - base.count_params() == sum(
        w.size for w in model.get_layer("probabilities").get_weights())
