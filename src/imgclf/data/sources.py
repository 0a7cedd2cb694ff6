"""What ``data.source`` names, parsed into a typed value (pure: no file or network access).

Three kinds of source are accepted:

* ``kaggle:OWNER/NAME`` - a Kaggle dataset handle, fetched as a zip over HTTPS;
* ``https://...`` or ``http://...`` - a zip or tar archive on a web server;
* a local path - a folder of class sub-folders or an archive file, absolute or relative
  to the working directory; ``file://`` URLs are read as local paths.

Parsing is kept apart from fetching so that a typo in ``params.yaml`` is reported at
once, with the accepted forms, before any download starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from imgclf.errors import UserError

# Kaggle owner and dataset slugs: letters, digits, '-', '_' and '.'.
_KAGGLE_RE = re.compile(r"^(?i:kaggle):([A-Za-z0-9][A-Za-z0-9_.-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)$")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_FORMS = ("kaggle:OWNER/NAME, an https:// or file:// URL of a zip or tar archive, "
          "or a local folder of class sub-folders")


@dataclass(frozen=True)
class KaggleSource:
    """A Kaggle dataset, ``kaggle:OWNER/NAME``."""

    owner: str
    name: str

    @property
    def key(self) -> str:
        """The canonical handle, lower-cased as Kaggle slugs are case-insensitive."""
        return f"kaggle:{self.owner}/{self.name}".lower()


@dataclass(frozen=True)
class UrlSource:
    """An archive on a web server (``https://``, or ``http://`` for local test servers)."""

    url: str

    @property
    def key(self) -> str:
        return self.url


@dataclass(frozen=True)
class LocalSource:
    """A local folder of class sub-folders, or a local archive file."""

    path: Path

    @property
    def key(self) -> str:
        return str(self.path)


Source = KaggleSource | UrlSource | LocalSource


def parse_source(text: str) -> Source:
    """Parse ``data.source``; raise ``UserError`` listing the accepted forms if it fits none."""
    text = text.strip()
    if not text:
        raise UserError(f"data.source: empty; use {_FORMS}")
    if text.lower().startswith("kaggle:"):
        match = _KAGGLE_RE.match(text)
        if not match:
            raise UserError(f"data.source: {text!r} is not a Kaggle handle; "
                            "write kaggle:OWNER/NAME, e.g. kaggle:borhanitrash/"
                            "animal-image-classification-dataset")
        return KaggleSource(match.group(1), match.group(2))
    scheme_match = _SCHEME_RE.match(text)
    if scheme_match is None:
        return LocalSource(Path(text).expanduser())
    scheme = scheme_match.group(1).lower()
    parts = urlsplit(text)
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise UserError(f"data.source: {text!r} has no host name")
        return UrlSource(text)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UserError(f"data.source: {text!r} names a remote host; file:// URLs must be "
                            "local, like file:///path/to/archive.zip")
        if not parts.path:
            raise UserError(f"data.source: {text!r} has no path")
        return LocalSource(Path(unquote(parts.path)))
    raise UserError(f"data.source: the {scheme}:// scheme is not supported; use {_FORMS}")
