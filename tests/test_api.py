"""imgclf.load(path).predict(...): the rows `imgclf predict --format json` prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgclf
from imgclf import env

COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def noisy(colour: tuple[int, int, int], size: int, seed: int = 0) -> np.ndarray:
    """A (size, size, 3) uint8 image around ``colour``, as the tiny model was trained on."""
    rng = np.random.default_rng(seed)
    pixels = np.array(colour, np.int16) + rng.integers(-40, 40, (size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def cli_environ() -> dict[str, str]:
    """The environment of a user's shell: none of our variables, no TF log level chosen."""
    return {k: v for k, v in os.environ.items() if not env.ours(k)
            and k not in {"TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES"}}


def test_import_imgclf_loads_no_tensorflow() -> None:
    code = ("import sys, imgclf; heavy = sorted(m for m in ('tensorflow', 'keras', 'imgclf.api',"
            " 'onnxruntime', 'numpy') if m in sys.modules); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
    assert callable(imgclf.load)


@pytest.fixture(scope="module")
def pictures(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """red.png, green.png, blue.png at the model's size, a 40 px red.png, and bad.jpg."""
    size = imgclf.load(tiny_model).image_size
    root = tmp_path_factory.mktemp("pictures")
    for seed, (name, colour) in enumerate(COLOURS.items()):
        Image.fromarray(noisy(colour, size, seed)).save(root / f"{name}.png")
    (root / "big").mkdir()
    Image.fromarray(noisy(COLOURS["red"], 40, 7)).save(root / "big" / "red.png")
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff truncated")
    return root


@pytest.mark.slow
def test_rows_are_those_of_imgclf_predict_json(tiny_model: Path, pictures: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "imgclf", "predict", str(pictures), "--model",
                           str(tiny_model), "--format", "json", "--tta", "none"],
                          env=cli_environ(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # bad.jpg failed; the others are rows
    rows = imgclf.load(tiny_model).predict(pictures)
    assert rows == json.loads(proc.stdout)
    assert [r.get("predicted") for r in rows] == [None, "blue", "green", "red", "red"]
    assert "error" in rows[0] and rows[0]["path"] == str(pictures / "bad.jpg")
    # TensorFlow ran on this CPU-only machine without its CUDA probe's ERROR line.
    assert "cuInit" not in proc.stderr, proc.stderr


def test_arrays_score_as_their_files(tiny_model: Path, pictures: Path) -> None:
    clf = imgclf.load(tiny_model)
    names = ["red", "green", "blue"]
    files = [pictures / f"{n}.png" for n in names]
    arrays = [np.asarray(Image.open(f)) for f in files]
    by_file = clf.predict([str(f) for f in files])
    for rows in (clf.predict(np.stack(arrays)), clf.predict(arrays),
                 clf.predict([Image.open(f) for f in files])):
        assert [r["path"] for r in rows] == ["<array 0>", "<array 1>", "<array 2>"]
        assert [{**r, "path": ""} for r in rows] == [{**r, "path": ""} for r in by_file]
    big = np.asarray(Image.open(pictures / "big" / "red.png"))  # resized as the file is
    mixed = clf.predict([pictures / "big" / "red.png", big.astype(np.float64)])
    assert mixed[0]["top_k"] == mixed[1]["top_k"]
    assert [r["predicted"] for r in mixed] == ["red", "red"]
    assert clf.class_names == sorted(names) and "image_size=" in repr(clf)


def test_bad_inputs_are_named(tiny_model: Path, tmp_path: Path) -> None:
    clf = imgclf.load(tiny_model)
    missing = tmp_path / "nope.jpg"
    assert clf.predict(missing)[0]["path"] == str(missing)
    assert "cannot read" in clf.predict(missing)[0]["error"]
    with pytest.raises(ValueError, match=r"got shape \(4, 4, 2\)"):
        clf.predict(np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="top_k"):
        clf.predict(missing, top_k=0)


@pytest.mark.slow
def test_the_api_keeps_tensorflow_quiet_too(tiny_model: Path) -> None:
    code = ("import numpy as np, imgclf; clf = imgclf.load(__import__('sys').argv[1]); "
            "print(clf.predict(np.zeros((clf.image_size,) * 2 + (3,)))[0]['predicted'])")
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_model)], env=cli_environ(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in {"red", "green", "blue"}
    assert "cuInit" not in proc.stderr, proc.stderr
