"""uvicorn's HTTP/1.1 protocol (h11) with a time limit on each request's headers.

uvicorn times out an idle keep-alive connection, but not one that has started a
request and never finishes its headers: such connections (a slow or stuck client, or
a "slowloris" attack) would each hold one of the ``--max-connections`` forever.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


def protocol_with_header_timeout(timeout_s: float) -> type[H11Protocol]:
    """An H11Protocol that closes a connection whose next request's headers have not
    all arrived ``timeout_s`` after the connection opened or the last answer ended."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            # A new request replaces the cycle; the same cycle still there: no headers yet.
            self._header_timer = self.loop.call_later(timeout_s, self._expire, self.cycle)

        def _expire(self, cycle: object) -> None:
            if self.cycle is cycle and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol
