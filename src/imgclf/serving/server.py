"""Run the app with uvicorn on a socket of our own, so the real port is known.

The listening socket is bound before uvicorn starts (``--port 0`` picks a free one)
and the first line printed says where the server is, for people and for scripts.
The token is never printed: the line says only whether one is required.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from imgclf.errors import UserError
from imgclf.inference.predict import TOP_K
from imgclf.params import Tta
from imgclf.serving.defaults import (
    BATCH_IMAGES,
    BATCH_WINDOW_MS,
    HOST,
    MAX_FILES,
    MAX_UPLOAD_MB,
    PORT,
    TOKEN_ENV,
)
from imgclf.serving.report import ReportFiles
from imgclf.serving.settings import Settings


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host``:``port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off only on sockets that
    # say they are TCP; with it on, every answer waited ~40 ms for the client's ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose "
                        "another --port or --host") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run(model: str | os.PathLike[str], report: ReportFiles, host: str = HOST,
        port: int = PORT, tta: Tta = "none", top_k: int = TOP_K,
        max_upload_mb: float = MAX_UPLOAD_MB, max_files: int = MAX_FILES,
        batch_images: int = BATCH_IMAGES, batch_window_ms: float = BATCH_WINDOW_MS,
        allow_unsafe_model: bool = False) -> None:
    """Serve ``model`` until interrupted (see ``imgclf serve --help``)."""
    if top_k < 1 or max_files < 1 or batch_images < 1:
        raise UserError("--top-k, --max-files and --batch-images must be at least 1")
    if max_upload_mb <= 0 or batch_window_ms < 0:
        raise UserError("--max-upload-mb must be positive and --batch-window-ms not negative")
    token = os.environ.get(TOKEN_ENV) or None
    sock = listen(host, port)  # before the slow model load: a taken port fails at once
    import uvicorn

    from imgclf.serving.app import create_app
    from imgclf.serving.model import load_predictor

    predictor = load_predictor(model, tta, allow_unsafe_model)
    settings = Settings(report, token, top_k, int(max_upload_mb * 1024 * 1024), max_files,
                        batch_images, batch_window_ms / 1000, Path(model).name)
    app = create_app(predictor, settings)
    auth = f"bearer token required ({TOKEN_ENV})" if token else f"no token ({TOKEN_ENV} unset)"
    print(f"imgclf serve: {model} ({len(predictor.class_names)} classes, "
          f"{predictor.image_size} px, tta {tta}) at {url_of(sock)} ; API docs at /docs; "
          f"{auth}", flush=True)
    if host not in (HOST, "localhost", "::1"):
        print(f"imgclf serve: listening on {host}: other machines can reach it"
              + ("" if token else f"; set {TOKEN_ENV} to require a token"), file=sys.stderr)
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
