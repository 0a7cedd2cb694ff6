import math
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from imgclf.models.architectures import augmentation, build_model
from imgclf.models.augment import ASPECT, RandomResizedCrop, crop_boxes
from imgclf.models.saving import ModelInfo, load_model, save_model
from imgclf.params import AugmentParams, ModelParams


@pytest.mark.parametrize("min_area", [0.08, 0.25, 0.9])
def test_crop_boxes_lie_inside_the_image_with_the_asked_area_and_shape(min_area: float) -> None:
    uniform = np.random.default_rng(0).uniform(0, 1, (2000, 4)).astype(np.float32)
    boxes = crop_boxes(tf.constant(uniform), min_area).numpy()
    y0, x0, y1, x1 = boxes.T
    assert (boxes >= 0).all() and (boxes <= 1 + 1e-6).all()
    height, width = y1 - y0, x1 - x0
    assert (height > 0).all() and (width > 0).all()
    area = height * width
    ratio = width / height
    clipped = (height >= 1 - 1e-6) | (width >= 1 - 1e-6)
    # Unclipped boxes cover min_area..1 of the image with an aspect ratio in ASPECT.
    assert (area[~clipped] >= min_area - 1e-5).all() and (area <= 1 + 1e-5).all()
    assert (ratio[~clipped] >= ASPECT[0] - 1e-4).all()
    assert (ratio[~clipped] <= ASPECT[1] + 1e-4).all()
    # The positions spread over the whole image, not just its centre.
    assert y0.min() < 0.02 and x0.min() < 0.02 and y1.max() > 0.98 and x1.max() > 0.98
    if min_area < 0.5:
        assert area.min() < min_area + 0.05  # small boxes do occur


def test_crop_boxes_use_the_numbers_as_documented() -> None:
    # area 0.25 (u0=0 with min_area 0.25), ratio 1 (u1 halfway in log space), top-left.
    box = crop_boxes(tf.constant([[0.0, 0.5, 0.0, 0.0]]), 0.25).numpy()[0]
    np.testing.assert_allclose(box, [0.0, 0.0, 0.5, 0.5], atol=1e-6)
    # The same box at the bottom-right corner.
    box = crop_boxes(tf.constant([[0.0, 0.5, 1.0, 1.0]]), 0.25).numpy()[0]
    np.testing.assert_allclose(box, [0.5, 0.5, 1.0, 1.0], atol=1e-6)
    assert math.isclose(math.log(ASPECT[0]), -math.log(ASPECT[1]))


def _quadrants(size: int = 16) -> np.ndarray:
    """A (1, size, size, 3) image whose four quadrants have different colours."""
    img = np.zeros((1, size, size, 3), np.float32)
    h = size // 2
    img[0, :h, :h] = 10
    img[0, :h, h:] = 80
    img[0, h:, :h] = 160
    img[0, h:, h:] = 240
    return img


def test_random_resized_crop_is_the_identity_in_inference() -> None:
    layer = RandomResizedCrop(0.25, seed=0)
    x = _quadrants()
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)


def test_random_resized_crop_zooms_into_part_of_the_image_in_training() -> None:
    layer = RandomResizedCrop(0.1, seed=0)
    x = np.repeat(_quadrants(), 64, axis=0)
    out = np.asarray(layer(x, training=True))
    assert out.shape == x.shape
    # Each whole image shows the top-left quadrant's colour; crops of a part often don't.
    lacks_top_left = [not np.isclose(o, 10, atol=1).any() for o in out]
    assert 0 < sum(lacks_top_left) < len(out)
    assert len({o.tobytes() for o in out}) > 32
    assert out.min() >= 10 - 1e-3 and out.max() <= 240 + 1e-3  # no fill from outside


def test_random_resized_crop_is_seeded() -> None:
    x = np.repeat(_quadrants(), 8, axis=0)
    a = np.asarray(RandomResizedCrop(0.25, seed=3)(x, training=True))
    b = np.asarray(RandomResizedCrop(0.25, seed=3)(x, training=True))
    c = np.asarray(RandomResizedCrop(0.25, seed=4)(x, training=True))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_augment_crop_param_adds_the_layer_first() -> None:
    aug = augmentation(AugmentParams(flip=True, crop=0.3), seed=1)
    assert isinstance(aug[0], RandomResizedCrop) and aug[0].min_area == 0.3
    assert isinstance(aug[1], keras.layers.RandomFlip)
    assert not any(isinstance(a, RandomResizedCrop) for a in augmentation(AugmentParams(), 1))


def test_a_model_with_the_crop_saves_and_loads_in_safe_mode(tmp_path: Path) -> None:
    model = build_model(ModelParams(arch="compact"), 32, 3,
                        augmentation(AugmentParams(crop=0.25), seed=0))
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    path = tmp_path / "model.keras"
    save_model(model, path, ModelInfo(["a", "b", "c"], 32))
    loaded, info = load_model(path)  # safe mode: no code runs, the layer is registered
    assert any(isinstance(layer, RandomResizedCrop) for layer in loaded.layers)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert info.image_size == 32
