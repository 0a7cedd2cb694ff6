"""``imgclf predict``: files and folders, unreadable files, every colour mode, output formats.

The model is the session's ``tiny_model`` (16 px, classes blue, green, red). Images are
generated here with Pillow; for each colour mode the test writes the same picture as
plain RGB and checks that both are predicted identically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from imgclf import cli
from imgclf.data.images import load_image
from imgclf.inference.predict import (
    Prediction,
    find_images,
    format_csv,
    format_json,
    format_table,
    predict_paths,
    to_predictions,
)
from imgclf.models.saving import ModelInfo, load_model, read_info, save_model

COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def noisy(colour: tuple[int, int, int], size: tuple[int, int] = (24, 24),
          seed: int = 0) -> np.ndarray:
    """An (H, W, 3) image around ``colour``, as the tiny model was trained on."""
    rng = np.random.default_rng(seed)
    pixels = np.array(colour, np.int16) + rng.integers(-40, 40, (size[1], size[0], 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> tuple[object, object]:
    return load_model(tiny_model)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """photos/{red.png, sub/green.JPG, sub/.hidden.png, .cache/blue.png, notes.txt, bad.jpg}"""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / ".cache").mkdir()
    Image.fromarray(noisy(COLOURS["red"])).save(root / "red.png")
    Image.fromarray(noisy(COLOURS["green"], seed=1)).save(root / "sub" / "green.JPG",
                                                           format="JPEG", quality=95)
    Image.fromarray(noisy(COLOURS["blue"])).save(root / "sub" / ".hidden.png")
    Image.fromarray(noisy(COLOURS["blue"])).save(root / ".cache" / "blue.png")
    (root / "notes.txt").write_text("not an image")
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff truncated")
    return root


# --- which files ----------------------------------------------------------------------------


def test_folders_give_image_files_recursively_and_skip_hidden_ones(photos: Path) -> None:
    assert find_images([photos]) == [photos / "bad.jpg", photos / "red.png",
                                     photos / "sub" / "green.JPG"]


def test_named_files_are_always_tried_in_the_order_given(photos: Path) -> None:
    named = [photos / "notes.txt", photos / "sub", photos / "missing.png"]
    assert find_images(named) == [photos / "notes.txt", photos / "sub" / "green.JPG",
                                  photos / "missing.png"]


# --- colour modes: the same pixels as the RGB picture ----------------------------------------


def colour_mode_pairs(root: Path) -> list[tuple[str, Path, Path]]:
    """(mode, file in that mode, the same picture as an 8-bit RGB PNG) for each mode."""
    root.mkdir()
    pairs = []

    def pair(name: str, image: Image.Image, rgb: np.ndarray, **save: object) -> None:
        path = root / f"{name}.{save.pop('ext', 'png')}"
        image.save(path, **save)
        Image.fromarray(rgb, "RGB").save(root / f"{name}_rgb.png")
        pairs.append((name, path, root / f"{name}_rgb.png"))

    rgb = noisy(COLOURS["blue"], seed=2)
    gray = noisy((90, 90, 90), seed=3)[:, :, 0]
    pair("L", Image.fromarray(gray, "L"), np.stack([gray] * 3, axis=-1))

    # CMYK JPEG: the RGB picture is what Pillow decodes from the file.
    cmyk = root / "cmyk_source.jpg"
    Image.fromarray(rgb).convert("CMYK").save(cmyk, quality=95)
    with Image.open(cmyk) as im:
        assert im.mode == "CMYK"
        pair("CMYK", im.copy(), np.asarray(im.convert("RGB")), ext="jpg", quality=95)
    # Saving again re-encodes: compare with the RGB of the file actually written.
    with Image.open(root / "CMYK.jpg") as im:
        Image.fromarray(np.asarray(im.convert("RGB"))).save(root / "CMYK_rgb.png")

    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    pair("RGBA", Image.fromarray(opaque, "RGBA"), rgb)

    # Palette with a transparent entry: transparent pixels become white.
    palette = [255, 0, 0, 200, 40, 40, 40, 200, 40, 40, 40, 200]
    index = np.random.default_rng(4).integers(0, 4, (24, 24)).astype(np.uint8)
    p_image = Image.fromarray(index, "P")
    p_image.putpalette(palette + [0] * (768 - len(palette)))
    colours = np.array(palette, np.uint8).reshape(-1, 3)[index]
    colours[index == 0] = 255
    pair("P", p_image, colours, transparency=0)

    # 16-bit grayscale: its range is scaled to 0..255 (as images.py documents).
    deep = (np.random.default_rng(5).integers(0, 60000, (24, 24))).astype(np.uint16)
    scaled = np.clip(deep.astype(np.float64) * (255.0 / deep.max()), 0, 255).astype(np.uint8)
    pair("I16", Image.fromarray(deep), np.stack([scaled] * 3, axis=-1))  # mode I;16

    # EXIF orientation 6 (rotate 90 degrees clockwise to show). 30x20 pixels: too small
    # for the JPEG draft mode to decode it at a reduced scale, so decoding is exact.
    wide = noisy(COLOURS["red"], size=(30, 20), seed=6)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(wide).save(root / "exif.jpg", exif=exif, quality=95)
    with Image.open(root / "exif.jpg") as im:
        stored = np.asarray(im.convert("RGB"))
    Image.fromarray(np.rot90(stored, k=-1).copy()).save(root / "exif_rgb.png")
    pairs.append(("EXIF", root / "exif.jpg", root / "exif_rgb.png"))
    return pairs


def test_every_colour_mode_is_predicted_as_its_rgb_picture(tmp_path: Path, model: tuple,
                                                            tiny_model: Path) -> None:
    keras_model, info = model
    pairs = colour_mode_pairs(tmp_path / "modes")
    with Image.open(tmp_path / "modes" / "I16.png") as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    size = read_info(tiny_model).image_size
    for mode, path, rgb in pairs:
        np.testing.assert_array_equal(load_image(path, size), load_image(rgb, size),
                                      err_msg=mode)
    files = [p for _, path, rgb in pairs for p in (path, rgb)]
    # One image per batch, so that equal pixels go through exactly the same computation.
    probs, errors = predict_paths(keras_model, files, info.image_size, batch_size=1)
    assert errors == [None] * len(files)
    for i, (mode, _, _) in enumerate(pairs):
        np.testing.assert_array_equal(probs[2 * i], probs[2 * i + 1], err_msg=mode)
    assert np.isfinite(probs).all()
    predicted = [p.predicted for p in to_predictions(files, probs, errors, info.class_names)]
    assert predicted[files.index(tmp_path / "modes" / "exif.jpg")] == "red"


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    pairs = {mode: (path, rgb) for mode, path, rgb in colour_mode_pairs(tmp_path / "m")}
    path, _ = pairs["EXIF"]
    with Image.open(path) as im:
        assert im.size == (30, 20)
    # Not square once rotated: compare the unresized decode through a large size.
    rotated = load_image(path, 64)
    upright = load_image(pairs["EXIF"][1], 64)
    np.testing.assert_array_equal(rotated, upright)


# --- batches and failures ---------------------------------------------------------------------


def test_failures_keep_their_place_and_do_not_stop_the_batch(photos: Path,
                                                             model: tuple) -> None:
    keras_model, info = model
    files = [photos / "red.png", photos / "bad.jpg", photos / "notes.txt",
             photos / "sub" / "green.JPG", photos / "nowhere.png"]
    probs, errors = predict_paths(keras_model, files, info.image_size, batch_size=2)
    assert [e is None for e in errors] == [True, False, False, True, False]
    assert "No such file" in errors[4]
    assert np.isnan(probs[[1, 2, 4]]).all()
    single, _ = predict_paths(keras_model, files, info.image_size, batch_size=1)
    np.testing.assert_allclose(probs[[0, 3]], single[[0, 3]], atol=1e-5)
    preds = to_predictions(files, probs, errors, info.class_names, top_k=3)
    assert [p.predicted for p in preds] == ["red", None, None, "green", None]
    assert preds[0].confidence == preds[0].top_k[0][1]
    assert preds[0].top_k[0][0] == "red"
    assert sum(p for _, p in preds[0].top_k) == pytest.approx(1, abs=1e-4)


def test_nothing_readable_gives_no_scores(tmp_path: Path, model: tuple) -> None:
    keras_model, info = model
    (tmp_path / "a.png").write_bytes(b"")
    probs, errors = predict_paths(keras_model, [tmp_path / "a.png"], info.image_size)
    assert errors == ["empty file"] and probs.shape == (1, 0)


# --- formats ----------------------------------------------------------------------------------

PREDS = [Prediction("a.png", "cat", 0.9, (("cat", 0.9), ("dog", 0.1))),
         Prediction("b.jpg", error="empty file"),
         Prediction("dir/c.png", "dog", 0.6, (("dog", 0.6), ("cat", 0.4)))]


def test_table_lists_the_predicted_files_in_columns() -> None:
    lines = format_table(PREDS).splitlines()
    assert lines == ["file       predicted  confidence  top 2",
                     "a.png      cat            0.9000  cat 0.900, dog 0.100",
                     "dir/c.png  dog            0.6000  dog 0.600, cat 0.400"]
    assert format_table(PREDS[1:2]) == ""


def test_csv_has_a_column_per_rank_and_the_error() -> None:
    rows = list(csv.DictReader(io.StringIO(format_csv(PREDS))))
    assert list(rows[0]) == ["path", "predicted", "confidence", "unknown", "ood_score",
                             "class_1", "prob_1", "class_2", "prob_2", "error"]
    assert rows[0]["class_2"] == "dog" and rows[0]["prob_2"] == "0.1"
    assert rows[1]["error"] == "empty file" and rows[1]["predicted"] == ""


def test_json_is_a_list_of_objects() -> None:
    data = json.loads(format_json(PREDS))
    assert data[0] == {"path": "a.png", "predicted": "cat", "confidence": 0.9,
                       "top_k": [["cat", 0.9], ["dog", 0.1]]}
    assert data[1] == {"path": "b.jpg", "error": "empty file"}
    assert json.loads(format_json([])) == []


# --- the command ------------------------------------------------------------------------------


def test_cli_table_reports_failures_on_stderr_and_exits_1(
        photos: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["predict", str(photos), "--model", str(tiny_model)])
    out, err = capsys.readouterr()
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["file", "predicted", "confidence", "top", "3"]
    assert [line.split()[:2] for line in lines[1:]] == [
        [str(photos / "red.png"), "red"], [str(photos / "sub" / "green.JPG"), "green"]]
    assert err.splitlines() == [f"imgclf predict: {photos / 'bad.jpg'}: "
                                "not an image Pillow can read"]


def test_cli_json_to_a_file_caps_top_k_and_exits_0_when_all_succeed(
        photos: Path, tiny_model: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "out" / "predictions.json"
    code = cli.main(["predict", str(photos / "red.png"), str(photos / "sub"), "--model",
                     str(tiny_model), "--top-k", "10", "--format", "json", "--output",
                     str(out_file)])
    out, err = capsys.readouterr()
    assert code == 0 and out == ""
    assert "2 predicted, 0 failed" in err
    data = json.loads(out_file.read_text())
    assert [d["path"] for d in data] == [str(photos / "red.png"),
                                         str(photos / "sub" / "green.JPG")]
    for d in data:
        assert set(d) == {"path", "predicted", "confidence", "unknown", "ood_score", "top_k"}
        assert len(d["top_k"]) == 3  # capped at the number of classes
        assert {name for name, _ in d["top_k"]} == {"red", "green", "blue"}
        assert d["top_k"][0] == [d["predicted"], d["confidence"]]
    assert [p.name for p in out_file.parent.iterdir()] == ["predictions.json"]


def test_cli_csv_holds_the_errors(photos: Path, tiny_model: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["predict", str(photos / "notes.txt"), str(photos / "red.png"),
                     "--model", str(tiny_model), "--format", "csv", "--top-k", "1"])
    out, err = capsys.readouterr()
    assert code == 1 and err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["predicted"] for r in rows] == ["", "red"]
    assert rows[0]["error"] == "not an image Pillow can read"
    assert "class_2" not in rows[0]


@pytest.mark.parametrize("args", [["--top-k", "0"], ["--batch-size", "0"]])
def test_cli_bad_options_are_user_errors(photos: Path, tiny_model: Path, args: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["predict", str(photos), "--model", str(tiny_model), *args])
    assert code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_cli_folder_without_images_and_missing_model_are_user_errors(
        tmp_path: Path, photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", str(tmp_path / "empty"), "--model", "x.keras"]) == 2
    assert "no image files" in capsys.readouterr().err
    assert cli.main(["predict", str(photos), "--model", str(tmp_path / "none.keras")]) == 2
    assert "no model file" in capsys.readouterr().err


def test_cli_model_with_code_needs_allow_unsafe_model(
        photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The mean of each channel, through a Lambda layer (Python code in the file): red
    # pictures score highest on the first class.
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Lambda(lambda x: x / 255.0)])
    path = tmp_path / "coded.keras"
    save_model(model, path, ModelInfo(["red", "green", "blue"], 8))
    red = str(photos / "red.png")

    assert cli.main(["predict", red, "--model", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"imgclf predict: error: {path}: refused to load: the file contains code (e.g. a "
        "Lambda layer) that would run on loading; if, and only if, you trust the file, pass "
        "--allow-unsafe-model"]

    assert cli.main(["predict", red, "--model", str(path), "--allow-unsafe-model"]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [[red, "red"]]
    assert err.splitlines() == [f"warning: loading {path} with code allowed "
                                "(--allow-unsafe-model): any code in it runs now"]


def test_cli_help_lists_predict(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "predict" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    out = capsys.readouterr().out
    assert "--top-k" in out and "--format" in out and "--output" in out
    assert "--allow-unsafe-model" in out
