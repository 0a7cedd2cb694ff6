"""``POST /explain``: the page's "why" toggle, each uploaded photo beside its heatmap.

A route of its own, so ``POST /predict``'s answer stays exactly ``imgclf predict``'s
JSON. It takes the same multipart ``files`` and answers, per file in order,
``{path, predicted, overlay}``: the predicted class (with the server's test-time
augmentation, as ``/predict`` answers) and a PNG data URL of the photo beside its
heatmap of that class (:mod:`imgclf.inference.explain`), or ``{path, error}``.

The heatmaps need the Keras model's layers and gradients: the ``.keras`` file is loaded
a second time on the first request (the predictor may be any format and keeps its own
runtime and batcher); for another format the answer is 409 with a one-line reason.
Requests are explained one at a time, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.requests import ClientDisconnect

from imgclf.errors import UserError
from imgclf.inference.batch import predict_batch
from imgclf.inference.explain import explainer, heatmaps, side_by_side
from imgclf.inference.heatmap_files import enlarged
from imgclf.inference.predict import decode_or_reason
from imgclf.inference.runtimes import KERAS, model_format
from imgclf.serving.model import Predictor
from imgclf.serving.settings import ServeSettings
from imgclf.serving.uploads import read_uploads


class Explainer:
    """The heatmaps of one server's model: loaded on first use, one request at a time."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.lock = threading.Lock()
        self.loaded: tuple[Any, Any] | None = None  # (keras model, explainer parts)

    def refusal(self) -> str | None:
        """Why this server cannot explain (one line), or None."""
        path = self.predictor.runtime.path
        fmt = model_format(path)
        if fmt is not KERAS:
            return (f"the heatmaps need the Keras model and this server runs {path.name} "
                    f"(a {fmt.label} model): serve the .keras file, e.g. models/model.keras")
        return None

    def _model(self) -> tuple[Any, Any]:
        if self.loaded is None:
            from imgclf.models.saving import load_model

            model, _ = load_model(self.predictor.runtime.path, allow_unsafe=False)
            self.loaded = model, explainer(model)
        return self.loaded

    def explain(self, uploads: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """One answer per upload: ``{path, predicted, overlay}`` or ``{path, error}``."""
        size = self.predictor.image_size
        decoded = [decode_or_reason(data, size) for _, data in uploads]
        good = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
        out: list[dict[str, Any]] = [{"path": name, "error": d} if isinstance(d, str) else {}
                                     for (name, _), d in zip(uploads, decoded, strict=True)]
        if not good:
            return out
        pixels = np.stack([decoded[i] for i in good]).astype(np.float32)
        with self.lock:
            model, parts = self._model()
            classes = predict_batch(_Probabilities(model), pixels,
                                    self.predictor.tta).argmax(axis=1)
            heat = heatmaps(model, pixels, classes, parts=parts)
        for i, c, image, h in zip(good, classes, pixels, heat, strict=True):
            out[i] = {"path": uploads[i][0], "predicted": self.predictor.class_names[int(c)],
                      "overlay": _data_url(enlarged(side_by_side(image, h)))}
        return out


class _Probabilities:
    """``predict_on_batch`` of a Keras model's first output, the probabilities, whatever
    else it outputs (an out-of-distribution score beside them)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_on_batch(self, pixels: np.ndarray) -> np.ndarray:
        out = self.model.predict_on_batch(pixels)
        return np.asarray(out[0] if isinstance(out, (list, tuple)) else out)


def _data_url(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def add_explain_route(app: FastAPI, guarded: list[Any], predictor: Predictor,
                      settings: ServeSettings, openapi_extra: dict[str, Any]) -> None:
    """``POST /explain`` on ``app``, behind the same token check (``guarded``) and limits."""
    explaining = Explainer(predictor)

    @app.post("/explain", dependencies=guarded, response_class=JSONResponse,
              summary="each uploaded image beside its heatmap of the predicted class",
              openapi_extra=openapi_extra)
    async def explain(request: Request) -> JSONResponse:
        """Per file: `{path, predicted, overlay}` (overlay: a PNG data URL of the image
        beside its Grad-CAM-family heatmap) or `{path, error}`; 409 when the server's
        model is not a .keras file."""
        why = explaining.refusal()
        if why is not None:
            raise HTTPException(409, why)
        try:
            uploads = await read_uploads(request, settings.max_files)
        except ClientDisconnect:  # gone during its upload: nobody reads an answer
            return JSONResponse(None, 400)
        try:
            answers = await asyncio.to_thread(explaining.explain, uploads)
        except UserError as exc:  # e.g. the model file carries code: refused in safe mode
            raise HTTPException(409, str(exc)) from None
        done = any("error" not in a for a in answers)
        return JSONResponse(answers, 200 if done else 422)
