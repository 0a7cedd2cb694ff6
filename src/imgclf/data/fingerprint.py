"""The ``source`` stage: a fingerprint of what ``data.source`` names, for DVC to compare.

DVC cannot see inside a folder outside the repository, so the ``download`` stage
depends on ``data/source.json`` instead, which this stage rewrites on every
``dvc repro`` (``always_changed``). ``download`` reruns only when the file's content
changes:

* a local folder: the count of its files and a sha256 over the sorted
  (relative path, size, mtime_ns) of each, the way make and DVC notice edits without
  reading contents (3,000 files take milliseconds);
* a local archive file: its size and mtime_ns;
* ``kaggle:`` and ``https://`` sources: the canonical source alone. Remote data is
  pinned by its sha256 manifest (known datasets) or by its URL, and
  ``$IMGCLF_DATA_MIRROR`` is deliberately not looked at: a mirror is verified against
  the manifest anyway, and CI and fresh clones must get the same fingerprint.

The file holds no timestamp of its own and sorted keys, so an unchanged source gives
a byte-identical file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from imgclf import fsutil
from imgclf.data.sources import KaggleSource, LocalSource, UrlSource, parse_source
from imgclf.errors import UserError
from imgclf.params import DataParams


def _walk(root: Path) -> list[tuple[bytes, int, int]]:
    """(relative path, size, mtime_ns) of every file under ``root``, links followed.

    Hidden entries are left out: the download stage never reads them, and an editor's
    or Finder's scratch files must not trigger a download.
    """
    rows: list[tuple[bytes, int, int]] = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of folders: links may loop
    stack = [root]
    while stack:
        folder = stack.pop()
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        stack.append(Path(entry.path))
                        continue
                    info = entry.stat()
                except OSError:  # a dangling link: download cannot read it either
                    continue
                rel = os.fsencode(os.path.relpath(entry.path, root))
                rows.append((rel, info.st_size, info.st_mtime_ns))
    return sorted(rows)


def fingerprint(source_text: str) -> dict[str, Any]:
    """What ``download`` would read for ``data.source = source_text``, summarised.

    Raises ``UserError`` when a local source does not exist.
    """
    source = parse_source(source_text)
    if isinstance(source, KaggleSource | UrlSource):
        kind = "kaggle" if isinstance(source, KaggleSource) else "url"
        return {"source": source.key, "kind": kind}
    assert isinstance(source, LocalSource)
    path = source.path
    if path.is_dir():
        digest = hashlib.sha256()
        rows = _walk(path)
        for rel, size, mtime_ns in rows:
            digest.update(rel + b"\0" + f"{size}\0{mtime_ns}\n".encode())
        return {"source": source.key, "kind": "folder", "files": len(rows),
                "sha256": digest.hexdigest()}
    if path.is_file():
        st = path.stat()
        return {"source": source.key, "kind": "archive", "size": st.st_size,
                "mtime_ns": st.st_mtime_ns}
    raise UserError(f"data.source: {path} does not exist; give a folder of class sub-folders "
                    "or an archive on this machine (relative paths start at the working "
                    f"folder, {Path.cwd()})")


def run(data: DataParams, out: str | os.PathLike[str]) -> None:
    """Write the fingerprint of ``data.source`` to ``out`` (JSON, byte-stable)."""
    fp = fingerprint(data.source)
    fsutil.write_text(out, json.dumps(fp, indent=2, sort_keys=True) + "\n")
    what = (f"{fp['files']} files, sha256 {fp['sha256'][:12]}" if fp["kind"] == "folder" else
            f"{fp['size']} bytes" if fp["kind"] == "archive" else
            "remote, pinned by its manifest or URL")
    print(f"source: {fp['source']} ({what}) -> {out}", file=sys.stderr)
