"""Fetch one URL to a file: the only network code of the pipeline.

The ``download`` stage (datasets) and the ``pretrained`` stage (backbone weights) both
stream through ``fetch_url``, so both get the same progress bar, socket timeout and
messages that say what to do. Callers turn HTTP error statuses into their own advice.
"""

from __future__ import annotations

import http.client
import math
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from imgclf import __version__, env
from imgclf.errors import UserError
from imgclf.progress import progress

USER_AGENT = f"imgclf/{__version__}"
TIMEOUT_ENV = "IMGCLF_HTTP_TIMEOUT"
# Per socket operation (connect, or one read), not for the whole download: a slow but
# moving transfer never times out, a server that stops sending does.
DEFAULT_TIMEOUT_S = 60.0
_MORE_TIME = (f"if the server is just slow, allow more seconds with {TIMEOUT_ENV}=SECONDS "
              "(or imgclf download --timeout SECONDS)")


def http_timeout(timeout: float | None = None) -> float:
    """Seconds a socket may wait: ``timeout`` if given, else ``$IMGCLF_HTTP_TIMEOUT``, else 60."""
    if timeout is not None:
        return _checked_timeout(timeout, f"--timeout {timeout}", "give")
    raw = env.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    return _checked_timeout(value, f"{TIMEOUT_ENV}={raw}",
                            f"unset it for the default {DEFAULT_TIMEOUT_S:g}, or set")


def _checked_timeout(value: float, setting: str, fix: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{setting}: not a timeout; {fix} a number of seconds above 0, "
                        "like 120")
    return float(value)




def host_of(url: str) -> str:
    """Host and port of ``url``, without any user:password part."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)




def fetch_url(request: urllib.request.Request | str, dest: Path, hint: str,
              timeout: float | None = None) -> None:
    """Stream ``request`` into ``dest`` with a progress bar and a socket timeout.

    ``timeout`` is the seconds one connect or read may wait (default: ``http_timeout()``).
    Unreachable or silent hosts and transfers cut off halfway become a ``UserError``
    ending in ``hint`` (what to do instead); HTTP error statuses are raised as
    ``HTTPError`` for the caller to explain.
    """
    timeout = http_timeout(timeout)
    if isinstance(request, str):
        request = urllib.request.Request(request, headers={"User-Agent": USER_AGENT})
    host = host_of(request.full_url)
    got, total, answered = 0, None, False
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, \
                open(dest, "wb") as f:
            answered = True
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress(total=total, desc=f"downloading from {host}", unit="B",
                          unit_scale=True, unit_divisor=1024) as bar:
                # read1, not read: it returns what has arrived instead of waiting for a full
                # chunk, so the count of bytes received is right when a transfer stalls.
                while chunk := response.read1(1 << 20):
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError,
            http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            # A silent server: say how long we waited, and how to wait longer.
            when = (f"with {got} of {total} bytes received" if total else
                    f"after {got} bytes") if answered else "waiting for an answer"
            raise UserError(f"download from {host} timed out after {timeout:g} s {when}; "
                            f"{_MORE_TIME}, or {hint}") from None
        reason = getattr(reason, "strerror", None) or str(reason) or type(exc).__name__
        if got or isinstance(exc, http.client.IncompleteRead):
            # The server answered, so the host is reachable; the transfer broke off.
            got_of = f"{got} of {total} bytes" if total else f"after {got} bytes"
            raise UserError(f"download from {host} was cut off ({got_of}: {reason}); "
                            f"run the stage again, or {hint}") from None
        raise UserError(f"cannot reach {host} ({reason}); {hint}") from None
    if total is not None and got != total:
        raise UserError(f"download from {host} was cut off ({got} of {total} bytes); "
                        f"run the stage again, or {hint}")
