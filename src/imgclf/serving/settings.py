"""How the server answers: the settings of the app (the ``imgclf serve`` options)."""

from __future__ import annotations

from dataclasses import dataclass

from imgclf.inference.predict import TOP_K
from imgclf.serving.defaults import BATCH_IMAGES, BATCH_WINDOW_MS, MAX_FILES, MAX_UPLOAD_MB
from imgclf.serving.report import ReportFiles


@dataclass(frozen=True)
class Settings:
    """How the server answers, beside the model it serves."""

    report: ReportFiles
    token: str | None = None  # $IMGCLF_SERVE_TOKEN: required as a bearer token when set
    top_k: int = TOP_K  # classes per image unless the request asks (?top_k=)
    max_upload_bytes: int = int(MAX_UPLOAD_MB * 1024 * 1024)
    max_files: int = MAX_FILES
    batch_images: int = BATCH_IMAGES
    batch_window_s: float = BATCH_WINDOW_MS / 1000
    model_name: str = ""  # shown on the page
