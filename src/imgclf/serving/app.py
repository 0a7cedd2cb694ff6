"""The FastAPI application of ``imgclf serve``: the API, the page and the report.

``POST /predict`` answers with exactly the JSON of ``imgclf predict --format json``
(the same ``to_predictions`` and ``format_json``), one object per uploaded file, an
unreadable one with its ``error``: 200 when at least one file was predicted, 422 when
none could be. Requests that are not multipart uploads, that carry no ``files``, too
many files or too large a body get a 4xx with a one-line ``detail``.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from imgclf import __version__
from imgclf.data.images import ImageError, decode_image
from imgclf.inference.predict import format_json, to_predictions
from imgclf.serving.batcher import MicroBatcher
from imgclf.serving.limits import BodySizeLimit
from imgclf.serving.model import Predictor
from imgclf.serving.report import read_report
from imgclf.serving.settings import Settings

FIELD = "files"
STATIC = resources.files("imgclf.serving") / "static"


def _decode_all(uploads: list[tuple[str, bytes]], size: int) -> list[np.ndarray | str]:
    """The model's pixels of each upload, or the reason it cannot be used."""
    out: list[np.ndarray | str] = []
    for _, data in uploads:
        try:
            out.append(decode_image(data, size))
        except ImageError as exc:
            out.append(str(exc))
    return out


async def _read_uploads(request: Request, settings: Settings) -> list[tuple[str, bytes]]:
    """``(file name, bytes)`` of every ``files`` field; HTTPException for a bad request."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise HTTPException(415, f"send the images as multipart/form-data fields named "
                            f"'{FIELD}' (curl -F {FIELD}=@photo.jpg ...), not "
                            f"{ctype.split(';')[0] or 'a body without a content type'}")
    # The body is bounded by BodySizeLimit; reading it first lets us see whether it was
    # cut off, which the parser would pass over by dropping the unfinished file. (Header
    # values are latin-1 text in ASGI, so the boundary always encodes back.)
    body = await request.body()
    boundary = ctype.partition("boundary=")[2].split(";")[0].strip().strip('"').encode("latin-1")
    if not boundary or b"--" + boundary + b"--" not in body[-len(boundary) - 64:]:
        raise HTTPException(400, "the multipart body ends before its closing boundary (cut "
                            "off, or not multipart at all): send the whole upload again")
    form = await request.form(max_files=settings.max_files,
                              max_fields=settings.max_files + 16)
    try:
        fields = form.getlist(FIELD)
        if not fields:
            raise HTTPException(400, f"no '{FIELD}' field in the upload: send one or more "
                                f"images as multipart fields named '{FIELD}'")
        uploads = []
        for i, item in enumerate(fields):
            if not isinstance(item, UploadFile):
                raise HTTPException(400, f"'{FIELD}' field {i + 1} is text, not a file: "
                                    f"upload the image file itself ({FIELD}=@photo.jpg)")
            uploads.append((item.filename or f"upload-{i + 1}", await item.read()))
        return uploads
    finally:
        await form.close()


def create_app(predictor: Predictor, settings: Settings) -> FastAPI:
    """The application serving ``predictor`` as ``settings`` say."""
    batcher = MicroBatcher(predictor.predict, settings.batch_images, settings.batch_window_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        size = predictor.image_size
        await batcher.warm_up((size, size, 3))  # before the first request, not during it
        yield
        await batcher.stop()

    app = FastAPI(title="imgclf", version=__version__, lifespan=lifespan,
                  description="Classify images with the model trained by the imgclf pipeline. "
                  "`POST /predict` takes images as multipart fields named `files` and answers "
                  "with the JSON of `imgclf predict --format json`.")

    def authorized(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), settings.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token: send the header "
                                "'Authorization: Bearer <token>' with the server's "
                                "IMGCLF_SERVE_TOKEN", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorized)]

    @app.get("/healthz", summary="liveness, and how many model calls and images so far")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "token_required": settings.token is not None,
                "model_calls": batcher.calls, "images": batcher.images}

    @app.get("/info", dependencies=guarded, summary="the model's classes and the limits")
    def info() -> dict[str, Any]:
        return {"model": settings.model_name, "classes": predictor.class_names,
                "image_size": predictor.image_size, "tta": predictor.tta,
                "top_k": settings.top_k, "max_upload_bytes": settings.max_upload_bytes,
                "max_files": settings.max_files}

    @app.post("/predict", dependencies=guarded, summary="classify uploaded images",
              response_class=JSONResponse, openapi_extra={"requestBody": {
                  "required": True, "content": {"multipart/form-data": {"schema": {
                      "type": "object", "required": [FIELD], "properties": {FIELD: {
                          "type": "array", "items": {"type": "string", "format": "binary"}}}}}}
              }})
    async def predict(request: Request, top_k: Annotated[int | None, Query(ge=1)] = None,
                      ) -> Response:
        """One JSON object per file, as `imgclf predict --format json` prints them:
        `{path, predicted, confidence, top_k: [[class, p], ...]}` or `{path, error}`.
        200 when any file was predicted, 422 when none could be."""
        with batcher.coming():  # a batch gathered meanwhile waits for this one
            uploads = await _read_uploads(request, settings)
            decoded = await run_in_threadpool(_decode_all, uploads, predictor.image_size)
            good = [i for i, item in enumerate(decoded) if not isinstance(item, str)]
            probs = np.full((len(uploads), len(predictor.class_names)), np.nan, np.float32)
            if good:
                pixels = np.stack([decoded[i] for i in good]).astype(np.float32)
                queued = batcher.submit(pixels)  # queued before coming() ends
        if good:
            probs[good] = await queued
        errors = [item if isinstance(item, str) else None for item in decoded]
        predictions = to_predictions([name for name, _ in uploads], probs, errors,
                                     predictor.class_names, top_k or settings.top_k)
        return Response(format_json(predictions), 200 if good else 422,
                        media_type="application/json")

    @app.get("/report", dependencies=guarded, summary="the evaluate stage's test metrics")
    def report() -> dict[str, Any]:
        return read_report(settings.report)

    @app.get("/report/{name}", dependencies=guarded, summary="a picture of the report",
             response_class=FileResponse)
    def report_picture(name: str) -> FileResponse:
        path = settings.report.pictures().get(name)  # only these names: no path tricks
        if path is None or not path.is_file():
            raise HTTPException(404, f"no report picture {name!r}: "
                                "dvc repro evaluate makes them")
        return FileResponse(path, media_type="image/png")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=Path(str(STATIC))), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    return app
