"""``POST /explain`` of the session's server (the tiny 16 px model): each upload beside
its heatmap as a PNG data URL, an unreadable one with its error, and ``/predict``'s
answer unchanged (no heatmap unless asked for)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
from PIL import Image


def test_explain_gives_each_photo_beside_its_heatmap(server: Any,
                                                     photo: Callable[..., bytes]) -> None:
    files = [("files", ("red.png", photo("red", 1), "image/png")),
             ("files", ("broken.png", b"not an image", "image/png")),
             ("files", ("blue.jpg", photo("blue", 2, "JPEG"), "image/jpeg"))]
    response = httpx.post(server.url + "explain", files=files, timeout=120)
    assert response.status_code == 200, response.text
    red, broken, blue = response.json()
    assert (red["path"], red["predicted"], blue["predicted"]) == ("red.png", "red", "blue")
    assert broken["path"] == "broken.png" and "error" in broken and "overlay" not in broken
    head, _, data = red["overlay"].partition(",")
    assert head == "data:image/png;base64"
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
    assert picture.shape == (14 * 16, 14 * (2 * 16 + 4), 3)  # the photo | its heatmap, x14

    plain = httpx.post(server.url + "predict", files=files[:1], timeout=60).json()
    assert set(plain[0]) == {"path", "predicted", "confidence", "unknown", "ood_score", "top_k"}
