"""Read the ``files`` of a multipart upload as it streams in, each held once in memory.

python-multipart's streaming parser (the one Starlette uses) applies the standard's
rules: the boundary parameter in any case, a quoted boundary, a preamble and an
epilogue. Each chunk of the body is parsed as it arrives and only the files' bytes are
kept, so the body is never held whole beside them (Starlette's ``request.form()`` keeps
the body, the form and a copy of each file). A body that ends before its closing
boundary is refused rather than passed over with its last file dropped.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

FIELD = "files"
MAX_PART_HEADER_BYTES = 16 * 1024  # a part's headers: a file name and a content type


@dataclass
class _Part:
    """One part of the body: its ``name`` and ``filename`` (None for a text field)."""

    header: list[bytearray] = field(default_factory=lambda: [bytearray(), bytearray()])
    disposition: str = ""  # the Content-Disposition header's value
    header_bytes: int = 0
    data: io.BytesIO = field(default_factory=io.BytesIO)
    name: str = ""
    filename: str | None = None


class _Collector:
    """The parser's callbacks: the ``files`` parts, at most ``max_files`` of them."""

    def __init__(self, max_files: int) -> None:
        self.max_files = max_files
        self.parts: list[_Part] = []
        self.ended = False
        self._part: _Part | None = None

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._header,
                "on_header_value": self._value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done, "on_part_data": self._data,
                "on_end": self._end}

    def _begin(self) -> None:
        self._part = _Part()

    def _header(self, data: bytes, start: int, end: int) -> None:
        self._add_header(0, data[start:end])

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._add_header(1, data[start:end])

    def _add_header(self, which: int, text: bytes) -> None:
        assert self._part is not None
        self._part.header[which] += text
        self._part.header_bytes += len(text)
        if self._part.header_bytes > MAX_PART_HEADER_BYTES:
            raise HTTPException(400, "a part of the upload has headers over "
                                f"{MAX_PART_HEADER_BYTES:,} bytes: send plain file fields")

    def _header_end(self) -> None:
        assert self._part is not None
        name, value = (bytes(b).decode("latin-1") for b in self._part.header)
        if name.strip().lower() == "content-disposition":
            self._part.disposition = value
        self._part.header = [bytearray(), bytearray()]

    def _headers_done(self) -> None:
        part = self._part
        assert part is not None
        _, options = parse_options_header(part.disposition)
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        part.filename = None if filename is None else filename.decode("utf-8", "replace")
        if part.name != FIELD:
            self._part = None  # another field: its data is dropped
            return
        if len([p for p in self.parts if p.filename is not None]) >= self.max_files:
            raise HTTPException(400, f"more than {self.max_files} files in one request "
                                "(the server's --max-files): send them in several requests")
        self.parts.append(part)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part is not None:
            self._part.data.write(data[start:end])

    def _end(self) -> None:
        self.ended = True


def boundary_of(content_type: str) -> bytes:
    """The ``boundary`` parameter of a multipart content type (its name in any case)."""
    _, options = parse_options_header(content_type)
    return {key.lower(): value for key, value in options.items()}.get(b"boundary", b"")


async def read_uploads(request: Request, max_files: int) -> list[tuple[str, bytes]]:
    """``(file name, bytes)`` of every ``files`` field, in order; HTTPException (4xx)
    for a body that is not a multipart upload of files."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise HTTPException(415, f"send the images as multipart/form-data fields named "
                            f"'{FIELD}' (curl -F {FIELD}=@photo.jpg ...), not "
                            f"{ctype.split(';')[0] or 'a body without a content type'}")
    boundary = boundary_of(ctype)
    if not boundary:
        raise HTTPException(400, "the multipart/form-data content type has no boundary: "
                            "let the HTTP client build the upload (curl -F ...)")
    collector = _Collector(max_files)
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
    except MultipartParseError as exc:
        raise HTTPException(400, f"the upload is not valid multipart/form-data ({exc}): "
                            "let the HTTP client build it (curl -F ...)") from None
    if not collector.ended:
        raise HTTPException(400, "the multipart body ends before its closing boundary (cut "
                            "off, or not multipart at all): send the whole upload again")
    return _files(collector.parts)


def _files(parts: list[_Part]) -> list[tuple[str, bytes]]:
    if not parts:
        raise HTTPException(400, f"no '{FIELD}' field in the upload: send one or more "
                            f"images as multipart fields named '{FIELD}'")
    uploads = []
    for i, part in enumerate(parts):
        if part.filename is None:
            raise HTTPException(400, f"'{FIELD}' field {i + 1} is text, not a file: "
                                f"upload the image file itself ({FIELD}=@photo.jpg)")
        # getvalue() hands over the buffer without a copy when nothing else holds it.
        uploads.append((part.filename or f"upload-{i + 1}", part.data.getvalue()))
        part.data = io.BytesIO()
    return uploads
