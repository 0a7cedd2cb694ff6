"""Run the app with uvicorn on a socket of our own, so the real port is known.

The listening socket is bound before uvicorn starts (``--port 0`` picks a free one)
and the first line printed says where the server is, for people and for scripts.
The token is never printed: the line says only whether one is required.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

from imgclf.errors import UserError
from imgclf.params import Tta
from imgclf.serving.limits import TOKEN_PARAMS
from imgclf.serving.report import ReportFiles
from imgclf.serving.settings import HOST, TOKEN_ENV, ServeSettings

if TYPE_CHECKING:
    import uvicorn

MAX_HEADER_BYTES = 16 * 1024  # a request's headers, all together (h11 buffers them)


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


def run(model: str | os.PathLike[str], report: ReportFiles,
        settings: ServeSettings | None = None, tta: Tta = "none",
        allow_unsafe_model: bool = False, unknown_threshold: float | None = None) -> None:
    """Serve ``model`` until interrupted (see ``imgclf serve --help``); ``settings``
    default to the environment's (``ServeSettings.load()``); ``unknown_threshold``
    overrides the model file's OOD threshold."""
    settings = settings or ServeSettings.load()
    host, token = settings.host, settings.token
    sock = listen(host, settings.port)  # before the slow model load: a taken port fails at once
    import uvicorn

    from imgclf.serving.app import create_app
    from imgclf.serving.model import load_predictor

    predictor = load_predictor(model, tta, allow_unsafe_model, unknown_threshold)
    app = create_app(predictor, settings, report, Path(model).name)
    auth = f"bearer token required ({TOKEN_ENV})" if token else f"no token ({TOKEN_ENV} unset)"
    print(f"imgclf serve: {model} ({len(predictor.class_names)} classes, "
          f"{predictor.image_size} px, tta {tta}, {predictor.unknown_line()}) at "
          f"{url_of(sock)} ; API docs at /docs; "
          f"{auth}", flush=True)
    if host not in (HOST, "localhost", "::1"):
        print(f"imgclf serve: listening on {host}: other machines can reach it"
              + ("" if token else f"; set {TOKEN_ENV} to require a token"), file=sys.stderr)
    uvicorn.Server(uvicorn_config(app, settings)).run(sockets=[sock])


def uvicorn_config(app: object, settings: ServeSettings) -> uvicorn.Config:
    """uvicorn's settings: connection and time limits, graceful shutdown, and an access
    log without tokens (the config sets up uvicorn's loggers, which the filter joins)."""
    import uvicorn

    from imgclf.serving.protocol import protocol_with_header_timeout

    config = uvicorn.Config(
        app, log_level="info", limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        http=protocol_with_header_timeout(settings.header_timeout_s))
    logging.getLogger("uvicorn.access").addFilter(RedactTokens(settings))
    return config


class RedactTokens(logging.Filter):
    """Blank the token, and any credential-like query parameter, in access log lines
    (such requests get 400, but uvicorn logs their URL first)."""

    def __init__(self, settings: ServeSettings) -> None:
        super().__init__()
        token = settings.token.get_secret_value() if settings.token else ""
        # As given, and as a URL carries it (uvicorn logs the query string as sent).
        self.forms = sorted({token, quote(token, safe=""), quote_plus(token, safe="")} - {""})

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(a) if isinstance(a, str) else a
                                for a in record.args)
        return True

    def _redact(self, text: str) -> str:
        for form in self.forms:
            text = text.replace(form, "***")
        names = "|".join(TOKEN_PARAMS)
        return re.sub(rf"([?&](?:{names})=)[^&\s]*", r"\1***", text, flags=re.IGNORECASE)
