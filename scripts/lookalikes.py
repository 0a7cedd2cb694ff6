"""Write a hard generated image set: fine-grained look-alike classes, 10:1 imbalance.

    python scripts/lookalikes.py OUT [--size 96] [--seed 0]

Four classes of the same scene (a textured background, a blurred ellipse) that differ
only in two small details: the ellipse's aspect ratio (1.0 or 1.3) and its hue (two
shades 12 degrees apart). Classes hold 400, 160, 80 and 40 images (10:1). Position,
size, rotation, background and lighting vary at random, so no single pixel gives the
class away. docs/tuning.md measures `imgclf tune` on it.
"""

from __future__ import annotations

import argparse
import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = {  # name: (aspect ratio, hue in [0, 1), images)
    "round_amber": (1.0, 0.10, 400),
    "oval_amber": (1.3, 0.10, 160),
    "round_gold": (1.0, 0.133, 80),
    "oval_gold": (1.3, 0.133, 40),
}


def scene(rng: np.random.Generator, size: int, aspect: float, hue: float) -> Image.Image:
    """One ``size`` x ``size`` RGB picture of the class (``aspect``, ``hue``)."""
    base = rng.integers(60, 190, size=3)
    noise = rng.normal(0, 28, size=(size // 4, size // 4, 3))
    background = np.clip(base + np.kron(noise, np.ones((4, 4, 1))), 0, 255).astype(np.uint8)
    img = Image.fromarray(background).filter(ImageFilter.GaussianBlur(1.5))
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    radius = rng.uniform(0.16, 0.26) * size
    cx, cy = rng.uniform(0.3, 0.7, size=2) * size
    light = rng.uniform(0.55, 0.95)
    r, g, b = (int(255 * c) for c in colorsys.hsv_to_rgb(hue + rng.normal(0, 0.006),
                                                         rng.uniform(0.6, 0.9), light))
    ImageDraw.Draw(layer).ellipse([cx - radius * aspect, cy - radius, cx + radius * aspect,
                                   cy + radius], fill=(r, g, b, 255))
    layer = layer.rotate(rng.uniform(-25, 25), center=(cx, cy), resample=Image.BICUBIC)
    img.paste(layer, (0, 0), layer)
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))


def write(out: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, (aspect, hue, count) in CLASSES.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            scene(rng, size, aspect, hue).save(out / name / f"{name}_{i:04d}.jpg", quality=92)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write(args.out, args.size, args.seed)


if __name__ == "__main__":
    main()
