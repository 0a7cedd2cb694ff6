"""ASGI guards around the app: the request body's size and time, query-string tokens,
and the answer of a request that shutdown cuts off.

``BodySizeLimit``: a declared ``Content-Length`` over the limit is answered at once
with 413, and a body that grows past it while streaming (no or a false length) is cut
off with 413 as soon as it does, so an upload can never fill the server's memory or
disk; a body not received within ``timeout_s`` gets 408, so a client that never
finishes cannot hold its connection. The pixel-count limit is the decoder's
(``imgclf.data.images.MAX_PIXELS``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from pydantic import SecretStr
from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(HTTPException):
    """Raised from ``receive``: the app's own handler answers 413, else the middleware."""


class _TooSlow(HTTPException):
    """Raised from ``receive``: the body did not arrive in time (408)."""


CLOSE = {"Connection": "close"}  # the rest of the body is not read: the connection ends
# Query parameters that look like a credential: refused, since URLs are logged.
TOKEN_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "key", "auth",
                          "authorization", "bearer"})


def too_large_message(max_bytes: int) -> str:
    return (f"the request body is larger than the {max_bytes:,} bytes allowed; send fewer "
            "or smaller images (imgclf serve --max-upload-mb raises the limit)")


def too_slow_message(timeout_s: float) -> str:
    return (f"the request body did not arrive within {timeout_s:g} s; send it again, or "
            "fewer images at once (imgclf serve --body-timeout-s raises the limit)")


async def send_json(send: Send, status: int, detail: str,
                    headers: dict[str, str] | None = None) -> None:
    """Answer ``{"detail": detail}`` as the app's own errors are, and close."""
    body = json.dumps({"detail": detail}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Wrap ``app`` so that no HTTP request body over ``max_bytes``, or slower than
    ``timeout_s`` in all, is accepted."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_json(send, 413, too_large_message(self.max_bytes))
            return
        loop = asyncio.get_running_loop()
        deadline, received, complete, started = loop.time() + self.timeout_s, 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: now receive() only says the client left
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except TimeoutError:
                raise _TooSlow(408, too_slow_message(self.timeout_s), CLOSE) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise _TooLarge(413, too_large_message(self.max_bytes), CLOSE)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except (_TooLarge, _TooSlow) as exc:
            if not started:
                await send_json(send, exc.status_code, exc.detail)


class RefuseQueryTokens:
    """400 for a request with a token in its URL: URLs end up in logs and histories."""

    def __init__(self, app: ASGIApp, token: SecretStr | None) -> None:
        self.app = app
        self.token = token.get_secret_value() if token else None

    def _carries_token(self, query: str) -> bool:
        pairs = parse_qsl(query, keep_blank_values=True)
        return any(k.lower() in TOKEN_PARAMS or v == self.token
                   for k, v in pairs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        if scope["type"] == "http" and query and self._carries_token(query):
            await send_json(send, 400, "send the token in the header 'Authorization: Bearer "
                            "<token>', never in the URL (URLs are logged)")
            return
        await self.app(scope, receive, send)


class AnswerWhenCancelled:
    """A request cut off by shutdown (its task cancelled after the grace period) gets a
    JSON 503 instead of uvicorn's plain 500 and a traceback; uvicorn logs one line."""

    def __init__(self, app: ASGIApp, retry_after_s: int) -> None:
        self.app, self.retry_after_s = app, retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except asyncio.CancelledError:
            if scope["type"] != "http" or started:
                raise
            # Answered, not re-raised: the task ends here, as shutdown wants.
            await send_json(send, 503, "the server is shutting down and could not finish "
                            "this request: send it again",
                            {"Retry-After": str(self.retry_after_s)})
