"""How the server answers: the settings and their defaults (the ``imgclf serve`` options).

Light to import (no web framework, no TensorFlow), so the CLI can show the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgclf.inference.predict import TOP_K
from imgclf.serving.batcher import MAX_IMAGES, WINDOW_S
from imgclf.serving.report import ReportFiles

HOST = "127.0.0.1"  # loopback: only this machine, unless --host says otherwise
PORT = 8000
MAX_UPLOAD_MB = 16.0
MAX_FILES = 64
TOKEN_ENV = "IMGCLF_SERVE_TOKEN"


@dataclass(frozen=True)
class Settings:
    """How the server answers, beside the model it serves."""

    report: ReportFiles
    token: str | None = None  # $IMGCLF_SERVE_TOKEN: required as a bearer token when set
    top_k: int = TOP_K  # classes per image unless the request asks (?top_k=)
    max_upload_bytes: int = int(MAX_UPLOAD_MB * 1024 * 1024)
    max_files: int = MAX_FILES
    batch_images: int = MAX_IMAGES
    batch_window_s: float = WINDOW_S
    model_name: str = ""  # shown on the page
