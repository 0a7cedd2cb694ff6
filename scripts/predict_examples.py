"""Print the console examples of docs/predict.md and docs/serve.md from one real run.

It makes the test suite's kind of tiny model (3 classes of flat-coloured noise, a few
epochs of the ``small`` CNN) and a ``photos`` folder, then runs, in that folder,
``imgclf predict`` (the table and the JSON) and ``imgclf serve`` with ``curl`` on the
same files, and prints each transcript to paste into the pages. So both pages show
the same run; tests/test_docs_examples.py checks that they still agree.

    python scripts/predict_examples.py [WORKDIR]   # a temporary folder by default
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
PREDICT = ["photos"]
PREDICT_JSON = ["photos/red.png", "photos/more/broken.jpg", "--format", "json", "--top-k", "2"]


def noise(colour: tuple[int, int, int], rng: np.random.Generator, size: int = 24) -> Image.Image:
    pixels = np.array(colour, np.int16) + rng.integers(-40, 40, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_model(work: Path) -> Path:
    """The tiny model of the test suite's ``tiny_model`` fixture."""
    from imgclf.data import split
    from imgclf.params import DataParams, ModelParams, SplitParams, TrainParams
    from imgclf.training import train

    rng = np.random.default_rng(0)
    for name, colour in CLASSES.items():
        (work / "raw" / name).mkdir(parents=True, exist_ok=True)
        for i in range(30):
            noise(colour, rng).save(work / "raw" / name / f"{name}_{i:03d}.png")
    split.run(DataParams(image_size=16), SplitParams(train=0.6, val=0.2, test=0.2, seed=1),
              work / "raw", work / "prepared")
    model = work / "model.keras"
    train.run(ModelParams(arch="small"), TrainParams(epochs=4, batch_size=8, learning_rate=0.003),
              work / "prepared", model, work / "live")
    return model


def make_photos(work: Path) -> None:
    """photos/: a few images in the formats predict converts, a broken one, a text file."""
    rng = np.random.default_rng(1)
    more = work / "photos" / "more"
    more.mkdir(parents=True, exist_ok=True)
    noise((120, 40, 200), rng).save(work / "photos" / "purple.jpg")
    noise(CLASSES["red"], rng).save(work / "photos" / "red.png")
    noise(CLASSES["green"], rng).convert("CMYK").save(more / "green_cmyk.jpg")
    noise((40, 160, 160), rng).save(more / "teal.png")
    noise(CLASSES["blue"], rng).save(more / "whole.jpg")
    data = (more / "whole.jpg").read_bytes()
    (more / "broken.jpg").write_bytes(data[: len(data) // 2])  # a download cut short
    (more / "whole.jpg").unlink()
    (work / "photos" / "notes.txt").write_text("not an image\n")


def transcript(args: list[str], cwd: Path) -> str:
    """``$ command``, its output and, when it failed, ``$ echo $?``."""
    run = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    shown = " ".join(shlex.quote(a) for a in args)
    # imgclf's own lines, not TensorFlow's start-up log
    errors = "".join(line for line in run.stderr.splitlines(keepends=True)
                     if line.startswith("imgclf"))
    text = f"$ {shown}\n{run.stdout}{errors}"
    return text + (f"$ echo $?\n{run.returncode}\n" if run.returncode else "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_transcript(model: Path, cwd: Path) -> str:
    port = free_port()
    server = subprocess.Popen(["imgclf", "serve", "--model", str(model), "--port", str(port)],
                              cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as r:
                    json.load(r)
                break
            except OSError:
                time.sleep(0.5)
        curl = ["curl", "-s", "-F", "files=@photos/red.png", "-F",
                "files=@photos/more/broken.jpg", f"http://127.0.0.1:{port}/predict?top_k=2"]
        run = subprocess.run(curl, cwd=cwd, capture_output=True, text=True, check=True)
        shown = " ".join(curl[:-1]) + f" '{curl[-1]}'"
        return f"$ {shown.replace(str(port), '8000')}\n{run.stdout}\n"
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    model = make_model(work)
    make_photos(work)
    plain = ["imgclf", "predict", "--model", str(model)]
    for args in (PREDICT, PREDICT_JSON):
        print(transcript([*plain, *args], work).replace(f" --model {model}", ""))
    print(serve_transcript(model, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
