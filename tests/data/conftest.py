"""Fixtures for the download tests: fake datasets, archives and a local HTTP server.

Everything is generated in ``tmp_path``; nothing touches the internet. The helpers are
handed out through the ``kit`` fixture rather than imported, because another
``conftest`` module may sit above this one and ``import conftest`` would be ambiguous.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ENV_VARS = ("IMGCLF_DATA_MIRROR", "IMGCLF_KAGGLE_URL", "KAGGLE_USERNAME", "KAGGLE_KEY")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No inherited mirror or credentials, and a working folder without a ``.env``.

    Not autouse: other test modules in this folder may rely on the real environment.
    """
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


class Kit:
    """Builders of fake datasets, manifests and archives."""

    @staticmethod
    def dataset_files(classes: dict[str, int], salt: str = "") -> dict[str, bytes]:
        """``{"<class>/<file>": bytes}``: distinct fake images (download never decodes them)."""
        return {f"{cls}/{cls}_{i:03d}.jpg": f"{salt}{cls}-{i}".encode() * 10
                for cls, n in classes.items() for i in range(n)}

    @staticmethod
    def write_tree(root: Path, files: dict[str, bytes]) -> Path:
        for name, data in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return root

    @staticmethod
    def read_tree(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob("*")) if p.is_file()}

    @staticmethod
    def manifest_of(files: dict[str, bytes]) -> str:
        return "".join(f"{hashlib.sha256(data).hexdigest()}  ./{name}\n"
                       for name, data in sorted(files.items()))

    @staticmethod
    def make_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(prefix + name, data)
        return path

    @staticmethod
    def make_tar(path: Path, files: dict[str, bytes], prefix: str = "",
                 mode: str = "w:gz") -> Path:
        with tarfile.open(path, mode) as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(prefix + name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return path


@pytest.fixture
def kit() -> type[Kit]:
    return Kit


@dataclass
class Server:
    """A local HTTP server answering from ``routes``: path -> (status, body, headers)."""

    base: str
    routes: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers.items())))
            status, body, headers = state.routes.get(self.path, (404, b"not found", {}))
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
