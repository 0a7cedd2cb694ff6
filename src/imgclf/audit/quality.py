"""Image-quality issues, with CleanVision's definitions, scores and default thresholds.

CleanVision (``cleanvision.issue_managers.image_property``) scores each issue in
[0, 1], low meaning worse, and flags a score below its threshold. The same formulas
are written here against single decoded images and original sizes, so the stage can
stream the prepared shards (a batch at a time) and needs no pandas frame of the whole
set; tests/audit compares them with CleanVision's own on generated images.

* dark: the 99th percentile of perceived brightness (a dark image has no bright part);
* low_information: the image's histogram entropy x 0.1, capped at 1;
* blurry: edge strength of the grayscale image shrunk to 64 px, and the spread of its
  histogram, each through ``1 - exp(-0.01 x)``;
* odd_aspect_ratio: min(w/h, h/w) of the original file;
* odd_size: sqrt(w x h) of the original file against the set's quartiles (IQR x 3).

Dark, blurry and low_information are measured on the prepared (resized) image the
model sees; size and aspect ratio on the original file's header.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageStat

THRESHOLDS = {"dark": 0.32, "blurry": 0.29, "low_information": 0.3,
              "odd_aspect_ratio": 0.35, "odd_size": 0.5}  # CleanVision's defaults
PIXEL_ISSUES = ("dark", "blurry", "low_information")
SIZE_ISSUES = ("odd_aspect_ratio", "odd_size")
ISSUES = PIXEL_ISSUES + SIZE_ISSUES
BLUR_SIDE = 64  # CleanVision's MAX_RESOLUTION_FOR_BLURRY_DETECTION
BLUR_FACTOR, ENTROPY_FACTOR = 0.01, 0.1  # its normalizing factors
COLOR_THRESHOLD = 0.18  # a histogram spread score at or below this adds nothing
IQR_FACTOR = 3.0


def pixel_scores(image: np.ndarray) -> tuple[float, float, float]:
    """``(dark, blurry, low_information)`` scores of one ``(H, W, 3)`` uint8 image."""
    rgb = image.astype(np.int64)
    brightness = np.sqrt(0.241 * rgb[..., 0] ** 2 + 0.691 * rgb[..., 1] ** 2
                         + 0.068 * rgb[..., 2] ** 2) / 255
    dark = float(np.percentile(brightness, 99))
    pil = Image.fromarray(image)
    low_info = min(1.0, ENTROPY_FACTOR * float(pil.entropy()))
    ratio = max(pil.width, pil.height) / BLUR_SIDE
    small = (pil.resize((max(int(pil.width // ratio), 1), max(int(pil.height // ratio), 1)))
             if ratio > 1 else pil.copy())
    gray = small.convert("L")
    edges = float(np.sqrt(ImageStat.Stat(gray.filter(ImageFilter.FIND_EDGES)).var[0]))
    spread = float(np.std(gray.histogram()))
    blur = 1 - np.exp(-edges * BLUR_FACTOR)
    spread_score = 1 - np.exp(-spread * BLUR_FACTOR)
    blurry = float(min(blur + (spread_score if spread_score > COLOR_THRESHOLD else 0.0), 1.0))
    return dark, blurry, low_info


def size_scores(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(odd_aspect_ratio, odd_size)`` scores, each ``(N,)``, of ``(N, 2)`` (w, h) sizes."""
    wh = np.maximum(np.asarray(sizes, np.float64).reshape(-1, 2), 1)
    aspect = np.minimum(wh[:, 0] / wh[:, 1], wh[:, 1] / wh[:, 0])
    side = np.sqrt(wh[:, 0]) * np.sqrt(wh[:, 1])
    if not len(side):
        return aspect, side
    q1, q3 = np.percentile(side, [25, 75])
    low, high = q1 - IQR_FACTOR * (q3 - q1), q3 + IQR_FACTOR * (q3 - q1)
    gap = high - low
    # CleanVision: 1 - distance from the middle of [low, high] over its width; all one
    # size makes the width 0, and then any other size scores below its threshold of 1.
    norm = gap if gap > 0 else (low + high) / 2
    odd = 1 - np.clip(np.abs(side - (low + high) / 2) / norm, 0, 1)
    if gap == 0:
        odd = np.where(odd < 1, 0.0, 1.0)
    return aspect, odd
