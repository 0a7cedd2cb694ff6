"""The FastAPI application of ``imgclf serve``: the API, the page and the report.

``POST /predict`` answers with exactly the JSON of ``imgclf predict --format json``
(the same ``to_predictions`` and ``format_json``), one object per uploaded file, an
unreadable one with its ``error``: 200 when at least one file was predicted, 422 when
none could be. Requests that are not multipart uploads, that carry no ``files``, too
many files or too large a body get a 4xx with a one-line ``detail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from imgclf import __version__
from imgclf.inference.predict import Usable, decode_or_reason, format_json, to_predictions
from imgclf.serving.batcher import Busy, MicroBatcher
from imgclf.serving.explain import add_explain_route
from imgclf.serving.limits import AnswerWhenCancelled, BodySizeLimit, RefuseQueryTokens
from imgclf.serving.model import Predictor
from imgclf.serving.report import ReportFiles, read_report
from imgclf.serving.settings import TOKEN_ENV, ServeSettings
from imgclf.serving.uploads import FIELD, read_uploads

T = TypeVar("T")
RETRY_AFTER_S = 1  # a busy server's Retry-After: one model call frees the queue fast
LOG = logging.getLogger("uvicorn.error")  # uvicorn's own log: one format, one place
STATIC = resources.files("imgclf.serving") / "static"
DESCRIPTION = ("Classify images with the model trained by the imgclf pipeline. `POST /predict` "
               "takes images as multipart fields named `files` and answers with the JSON of "
               "`imgclf predict --format json`.")
# The request body of POST /predict, for the OpenAPI page (the route reads it itself).
UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": [FIELD], "properties": {FIELD: {
        "type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


def _decode_all(uploads: list[tuple[str, bytes]], size: int) -> Usable:
    """The model's pixels of the uploads, and the reasons of those it cannot use."""
    return Usable.of([decode_or_reason(data, size) for _, data in uploads])


class ClientGone(Exception):
    """The client disconnected before its answer: its work was dropped."""


async def _disconnected(receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """Return once the client has gone (after its body, ``receive`` only says that)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(work: asyncio.Future[T], gone: asyncio.Future[None]) -> T:
    """The result of ``work``; ClientGone (``work`` cancelled) if ``gone`` comes first."""
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():
            work.cancel()  # the batcher skips a cancelled request; so does the decode pool
    if work.cancelled():
        raise ClientGone
    return work.result()


def _busy(exc: Busy) -> HTTPException:
    return HTTPException(503, f"the server is busy ({exc}): try again in {RETRY_AFTER_S} s",
                         headers={"Retry-After": str(RETRY_AFTER_S)})


def create_app(predictor: Predictor, settings: ServeSettings, report: ReportFiles,
               model_name: str = "") -> FastAPI:
    """The application serving ``predictor`` as ``settings`` say, with the evaluate
    stage's ``report``; ``model_name`` is shown on the page."""
    batcher = MicroBatcher(predictor.predict, settings.batch_images, settings.batch_window_s,
                           settings.max_queue)
    # A bounded pool: a large image can take a gigabyte while it is decoded.
    decoder = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="imgclf-decode")
    app = FastAPI(title="imgclf", version=__version__, description=DESCRIPTION,
                  lifespan=_lifespan(batcher, decoder, predictor.image_size))
    guarded = [Depends(_authorizer(settings))]
    _add_status_routes(app, guarded, batcher, predictor, settings, model_name)
    _add_predict_route(app, guarded, batcher, decoder, predictor, settings)
    add_explain_route(app, guarded, predictor, settings, UPLOAD_SCHEMA)  # the page's "why"
    _add_report_routes(app, guarded, report)
    _add_page(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes,
                       timeout_s=settings.body_timeout_s)
    app.add_middleware(RefuseQueryTokens, token=settings.token)
    app.add_middleware(AnswerWhenCancelled, retry_after_s=RETRY_AFTER_S)  # outermost
    return app


def _lifespan(batcher: MicroBatcher, decoder: ThreadPoolExecutor, size: int,
              ) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        await batcher.warm_up((size, size, 3))  # before the first request, not during it
        yield
        await batcher.stop()
        decoder.shutdown(wait=False, cancel_futures=True)

    return lifespan


def _authorizer(settings: ServeSettings) -> Callable[[Request], None]:
    """The check of the bearer token (none when no token is set)."""
    # Bytes on both sides: ASGI gives header values as latin-1 text, so a UTF-8 token
    # arrives as its bytes read one per character.
    token = settings.token.get_secret_value().encode("utf-8") if settings.token else None

    def authorized(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        given_bytes = given.strip().encode("latin-1")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, token):
            raise HTTPException(401, "missing or wrong bearer token: send the header "
                                "'Authorization: Bearer <token>' with the server's "
                                f"{TOKEN_ENV}", headers={"WWW-Authenticate": "Bearer"})

    return authorized


def _add_status_routes(app: FastAPI, guarded: list[Any], batcher: MicroBatcher,
                       predictor: Predictor, settings: ServeSettings, model_name: str) -> None:
    @app.get("/healthz", summary="liveness, how many model calls and images so far, and "
             "how many requests are being decoded or waiting (at most --max-queue)")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "token_required": settings.token is not None,
                "model_calls": batcher.calls, "images": batcher.images,
                "waiting": batcher.expected + batcher.waiting}

    @app.get("/info", dependencies=guarded, summary="the model's classes and the limits")
    def info() -> dict[str, Any]:
        return {"model": model_name, "classes": predictor.class_names,
                "image_size": predictor.image_size, "tta": predictor.tta,
                "unknown_threshold": predictor.threshold,
                "top_k": settings.top_k, "max_upload_bytes": settings.max_upload_bytes,
                "max_files": settings.max_files}


def _add_predict_route(app: FastAPI, guarded: list[Any], batcher: MicroBatcher,
                       decoder: ThreadPoolExecutor, predictor: Predictor,
                       settings: ServeSettings) -> None:
    @app.post("/predict", dependencies=guarded, summary="classify uploaded images",
              response_class=JSONResponse, openapi_extra=UPLOAD_SCHEMA)
    async def predict(request: Request, top_k: Annotated[int | None, Query(ge=1)] = None,
                      ) -> Response:
        """One JSON object per file, as `imgclf predict --format json` prints them:
        `{path, predicted, confidence, unknown, ood_score, top_k: [[class, p], ...]}` or
        `{path, error}`; `unknown` is true for an image of none of the classes.
        200 when any file was predicted, 422 when none could be; 503 with Retry-After
        when the server is busy."""
        try:
            uploads, usable, scores = await _score(request, batcher, decoder, predictor,
                                                   settings)
        except Busy as exc:
            raise _busy(exc) from None
        except ClientDisconnect:
            LOG.info("imgclf serve: a client disconnected during its upload; dropped it")
            return Response(status_code=400)  # nobody reads it
        except ClientGone:
            LOG.info("imgclf serve: a client disconnected before its answer; dropped it")
            return Response(status_code=400)
        probs, unknown = predictor.split(scores, len(uploads), usable.rows)
        predictions = to_predictions([name for name, _ in uploads], probs, usable.errors,
                                     predictor.class_names, top_k or settings.top_k, unknown)
        return Response(format_json(predictions), 200 if usable.rows else 422,
                        media_type="application/json")


async def _score(request: Request, batcher: MicroBatcher, decoder: ThreadPoolExecutor,
                 predictor: Predictor, settings: ServeSettings,
                 ) -> tuple[list[tuple[str, bytes]], Usable, np.ndarray | None]:
    """The uploads of ``request``, their decoded pixels and the model's ``(G, C)`` scores
    (None when no file is usable). Busy, ClientDisconnect or ClientGone otherwise."""
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] | None = None
    try:
        with batcher.coming():  # Busy when full; a batch gathered meanwhile waits for it
            uploads = await read_uploads(request, settings.max_files)
            gone = asyncio.ensure_future(_disconnected(request.receive))
            usable = await _unless_gone(loop.run_in_executor(
                decoder, _decode_all, uploads, predictor.image_size), gone)
            queued = None if usable.pixels is None else batcher.submit(usable.pixels)
        scores = None if queued is None else await _unless_gone(queued, gone)
        return uploads, usable, scores
    finally:
        if gone is not None:
            gone.cancel()


def _add_report_routes(app: FastAPI, guarded: list[Any], files: ReportFiles) -> None:
    @app.get("/report", dependencies=guarded, summary="the evaluate stage's test metrics")
    def report() -> dict[str, Any]:
        return read_report(files)

    @app.get("/report/{name}", dependencies=guarded, summary="a picture of the report",
             response_class=FileResponse)
    def report_picture(name: str) -> FileResponse:
        path = files.pictures().get(name)  # only these names: no path tricks
        if path is None or not path.is_file():
            raise HTTPException(404, f"no report picture {name!r}: "
                                "dvc repro evaluate makes them")
        return FileResponse(path, media_type="image/png")


def _add_page(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=Path(str(STATIC))), name="static")
