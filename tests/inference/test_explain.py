"""Grad-CAM and HiResCAM (imgclf.inference.explain) on models that must look somewhere.

The generated set: uniform noise with one solid square (a sixth of the side) in a random
corner; its colour (red, green or blue) is the class, so the evidence lies in the
square's quadrant alone. A tiny model of each kind is trained on it in seconds (the
small CNN at 32 px, MobileNetV2 alpha 0.35 at 64 px from the real ImageNet weights when
KERAS_HOME has them, else random), and at least half of each test image's heatmap mass
must fall in that quadrant. Each backbone family of model.arch, with random weights,
must give finite heatmaps of the right shape, found inside its nested backbone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SQUARE_COLOURS = np.array([(235, 30, 30), (30, 235, 30), (30, 30, 235)], np.float32)
CLASSES = ["red", "green", "blue", "none"]
NOISE = (96, 160)  # the background's range: grey noise, duller than any square


def corner_set(n: int, size: int, seed: int, noise: tuple[int, int] = NOISE,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pixels (n, size, size, 3) float32 0..255, labels (n,), corners (n,))``: noise
    with a square of side ``size // 6`` of the label's colour in corner ``corners[i]``
    (0 top left, 1 top right, 2 bottom left, 3 bottom right), or no square for the last
    label, "none" (corner -1). That class makes each colour one to be seen: with the
    colours alone, a model may take the last for "none of the others", evidence that
    lies everywhere (without "none", MobileNetV2's heatmaps of "green" and the small
    CNN's of a third colour missed the square: 0.3 to 0.4 of the mass in the quadrant)."""
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(*noise, (n, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, len(CLASSES), n)
    corners = np.where(labels < len(SQUARE_COLOURS), rng.integers(0, 4, n), -1)
    side = size // 6
    for i in np.flatnonzero(corners >= 0):
        top = 0 if corners[i] < 2 else size - side
        left = 0 if corners[i] % 2 == 0 else size - side
        top += rng.integers(0, 2) * (1 if top == 0 else -1)  # a pixel of jitter off the edge
        left += rng.integers(0, 2) * (1 if left == 0 else -1)
        pixels[i, top:top + side, left:left + side] = SQUARE_COLOURS[labels[i]]
    return pixels, labels, corners


def quadrant_mass(heat: np.ndarray, corner: int) -> float:
    """The share of ``heat`` (H, W) >= 0 that lies in quadrant ``corner``."""
    h, w = heat.shape
    rows = slice(0, h // 2) if corner < 2 else slice(h - h // 2, h)
    cols = slice(0, w // 2) if corner % 2 == 0 else slice(w - w // 2, w)
    total = float(heat.sum())
    return float(heat[rows, cols].sum()) / total if total > 0 else 0.0


def corner_masses(model: object, pixels: np.ndarray, corners: np.ndarray,
                  method: str) -> np.ndarray:
    """Each image's heatmap mass in its square's quadrant, for the predicted class, of
    the images with a square."""
    from imgclf.inference import explain

    heat = explain.heatmaps(model, pixels, method=method)  # type: ignore[arg-type]
    assert heat.shape == pixels.shape[:3] and np.isfinite(heat).all()
    assert heat.min() >= 0 and heat.max() <= 1
    return np.array([quadrant_mass(h, c) for h, c in zip(heat, corners, strict=True)
                     if c >= 0])


def report(arch: str, masses: dict[str, np.ndarray]) -> None:
    """One line per method (pytest -s shows them; docs/predict.md quotes them)."""
    for method, m in masses.items():
        print(f"\n{arch} {method}: quadrant mass mean {m.mean():.3f}, median "
              f"{np.median(m):.3f}, images >= 0.5: {(m >= 0.5).mean():.0%}")


def test_small_cnn_heatmap_lies_in_the_square_quadrant() -> None:
    import keras

    from imgclf.inference import explain
    from imgclf.models.architectures import build_model
    from imgclf.params import ModelParams

    keras.utils.set_random_seed(0)
    x, y, _ = corner_set(600, 32, seed=0, noise=NOISE)
    xt, yt, ct = corner_set(60, 32, seed=1, noise=NOISE)
    model = build_model(ModelParams(arch="small", dropout=0.0), 32, len(CLASSES))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  jit_compile=False)
    model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    assert (model.predict_on_batch(xt).argmax(1) == yt).mean() >= 0.95
    masses = {m: corner_masses(model, xt, ct, m) for m in explain.METHODS}
    report("small", masses)
    chosen = masses[explain.METHOD]
    assert chosen.mean() >= 0.6 and (chosen >= 0.5).mean() >= 0.9
    parts = explain.explainer(model)  # its first call runs eagerly, the next compiled
    eager, compiled = (explain.heatmaps(model, xt[:8], parts=parts) for _ in range(2))
    np.testing.assert_allclose(eager, compiled, atol=1e-4)
    # The measurement behind the default: HiResCAM, the gradient kept per position,
    # also credits the noise around the square (relu keeps every positive product).
    assert chosen.mean() >= masses["hirescam"].mean()


@pytest.mark.realweights
def test_mobilenet_v2_heatmap_lies_in_the_square_quadrant(real_weights: Path,
                                                          tmp_path: Path) -> None:
    """Saved and loaded back, so the heatmaps come from the nested backbone of a model
    file as train writes it."""
    import keras

    from imgclf.inference import explain
    from imgclf.models.architectures import BACKBONE, build_model, unfreeze_top
    from imgclf.models.cut import split_model
    from imgclf.models.info import ModelInfo
    from imgclf.models.saving import load_model, save_model
    from imgclf.params import ModelParams

    keras.utils.set_random_seed(0)
    size, top_layers = 128, 4  # the top: Conv_1 and what follows it
    x, y, _ = corner_set(240, size, seed=0, noise=NOISE)
    xt, yt, ct = corner_set(40, size, seed=1, noise=NOISE)
    weights = next(real_weights.glob("mobilenet_v2_*_0.35_224_no_top.h5"))
    model = build_model(ModelParams(arch="mobilenet_v2", alpha=0.35, dropout=0.0), size,
                        len(CLASSES), weights=weights)
    parts = split_model(model, top_layers)
    cut, _ = parts.bottom.predict(x, batch_size=60, verbose=0)
    unfreeze_top(model, top_layers)
    parts.top.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                      jit_compile=False)
    parts.top.fit(cut, y, batch_size=32, epochs=15, verbose=0)
    save_model(model, tmp_path / "model.keras", ModelInfo(class_names=CLASSES, image_size=size))
    loaded, _ = load_model(tmp_path / "model.keras")
    assert (loaded.predict_on_batch(xt).argmax(1) == yt).mean() >= 0.9
    assert [layer.name for layer in explain.feature_path(loaded)] == [BACKBONE, "out_relu"]
    masses = {m: corner_masses(loaded, xt, ct, m) for m in explain.METHODS}
    report("mobilenet_v2", masses)
    chosen = masses[explain.METHOD]
    assert chosen.mean() >= 0.6 and (chosen >= 0.5).mean() >= 0.9


FAMILIES = ["compact", "mobilenet_v3_small", "efficientnetv2_b0", "resnet50_v2",
            "convnext_tiny"]  # with mobilenet_v2 and small above: every family of model.arch


def test_every_backbone_family_gives_heatmaps_from_inside_its_backbone() -> None:
    from imgclf.inference import explain
    from imgclf.models.architectures import BACKBONE, BACKBONE_BUILDERS, build_model
    from imgclf.params import ModelParams

    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    for arch in FAMILIES:
        model = build_model(ModelParams(arch=arch, pretrained=False), 32, 3)
        path = explain.feature_path(model)
        assert (path[0].name == BACKBONE) == (arch in BACKBONE_BUILDERS), arch
        heat = explain.heatmaps(model, pixels, classes=[0, 2])
        assert heat.shape == (2, 32, 32) and np.isfinite(heat).all(), arch
        assert heat.min() >= 0 and heat.max() <= 1, arch


def test_a_second_output_beside_the_probabilities_is_left_alone() -> None:
    """As the model file with an out-of-distribution score beside the probabilities:
    the heatmaps are the probabilities' head's, the same as without the score."""
    import keras

    from imgclf.inference import explain
    from imgclf.models.architectures import build_model
    from imgclf.params import ModelParams

    base = build_model(ModelParams(arch="small"), 16, 3)
    head = base.get_layer("probabilities")
    score = keras.layers.Dense(1, name="score")(head.input)
    both = keras.Model(base.inputs, [base.outputs[0], score])
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(explain.heatmaps(both, pixels), explain.heatmaps(base, pixels),
                               atol=1e-5)


def test_a_model_without_a_spatial_map_is_refused_in_one_line() -> None:
    import keras

    from imgclf.inference import explain

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ValueError, match="no spatial feature map"):
        explain.feature_path(model)


def test_overlay_keeps_the_picture_and_paints_the_hot_part_red() -> None:
    from imgclf.inference import explain

    image = np.full((8, 8, 3), 128, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    out = explain.overlay(image, heat)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] > max(out[0, 0, 1], out[0, 0, 2])  # hot: red
    assert out[7, 7, 2] > out[7, 7, 0]  # cold: blue, faint
    both = explain.side_by_side(image, heat)
    assert both.shape == (8, 20, 3) and (both[:, :8] == image).all()


# --- imgclf predict --explain, and the gallery -------------------------------------------


def _photo(path: Path, colour: tuple[int, int, int], seed: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.integers(-30, 30, (24, 24, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_predict_explain_writes_one_png_per_image_without_collisions(
        tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from imgclf.inference import predict

    photos = tmp_path / "photos"
    _photo(photos / "a" / "cat.png", (200, 40, 40), 1)
    _photo(photos / "b" / "cat.png", (40, 40, 200), 2)
    (photos / "b" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "why"
    assert predict.run([photos], tiny_model, explain=out, fmt="json") == 1
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2 and all(p.name.startswith("cat-") for p in pngs)
    index = (out / "index.csv").read_text().splitlines()
    assert index[0] == "path,png,class" and len(index) == 3
    assert {row.split(",")[2] for row in index[1:]} == {"red", "blue"}
    with Image.open(pngs[0]) as im:  # 16 px model: the picture and its heatmap, x14
        assert im.size == (14 * (2 * 16 + 4), 14 * 16)
    assert "2 heatmaps" in capsys.readouterr().err


def test_predict_explain_says_in_one_line_it_needs_a_keras_model(tmp_path: Path) -> None:
    from imgclf.errors import UserError
    from imgclf.inference import predict

    model = tmp_path / "model.onnx"
    model.write_bytes(b"")  # refused by its format, before anything is read
    photo = _photo(tmp_path / "x.png", (40, 200, 40), 3)
    with pytest.raises(UserError, match=r"--explain needs the Keras model .*\.onnx") as exc:
        predict.run([photo], model, explain=tmp_path / "why")
    assert "\n" not in str(exc.value)


def test_gallery_shows_each_mistake_beside_its_heatmap(tiny_model: Path) -> None:
    from imgclf.evaluation.evaluate import keras_heatmaps
    from imgclf.evaluation.figures import gallery_figure

    images = np.stack([np.asarray(np.full((16, 16, 3), c, np.uint8))
                       for c in [(200, 40, 40), (40, 200, 40), (40, 40, 200)]])
    y_true = np.array([1, 2, 0])  # every one wrong
    probs = np.eye(3, dtype=np.float32)[[0, 1, 2]] * 0.9 + 0.1 / 3
    fig = gallery_figure(images, y_true, probs, ["red", "green", "blue"],
                         heatmaps=keras_heatmaps(tiny_model))
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == 3 and all(a.shape == (16, 36, 3) for a in shown)
    assert all((a[:, :16] == images[i]).all() for i, a in zip([0, 1, 2], shown, strict=True)
               ) or len({a[:, :16].tobytes() for a in shown}) == 3
