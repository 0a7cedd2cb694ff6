"""Kaggle datasets: the download URL of ``kaggle:OWNER/NAME`` and the API credentials.

The URL base is ``$IMGCLF_KAGGLE_URL`` (so tests can use a local server), else Kaggle's API;
credentials are ``KAGGLE_USERNAME``/``KAGGLE_KEY``, environment first, then ``./.env``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imgclf import env
from imgclf.data.sources import (
    KaggleSource,
)
from imgclf.errors import UserError

KAGGLE_URL_ENV = "IMGCLF_KAGGLE_URL"
DEFAULT_KAGGLE_URL = "https://www.kaggle.com/api/v1/datasets/download"


def kaggle_url(source: KaggleSource) -> str:
    """The URL the zip of ``source`` is fetched from."""
    base = env.get(KAGGLE_URL_ENV) or DEFAULT_KAGGLE_URL
    return f"{base.rstrip('/')}/{source.owner}/{source.name}"


def kaggle_credentials(environ: Mapping[str, str], dotenv: Path) -> tuple[str, str] | None:
    """(username, key) from the environment or, for each variable not set there, ``dotenv``."""
    from_file = env.dotenv(dotenv)  # read once for both
    user = env.get("KAGGLE_USERNAME", environ) or from_file.get("KAGGLE_USERNAME")
    key = env.get("KAGGLE_KEY", environ) or from_file.get("KAGGLE_KEY")
    if bool(user) != bool(key):
        missing = "KAGGLE_KEY" if user else "KAGGLE_USERNAME"
        raise UserError(f"{missing} is not set but its partner is (environment or .env); "
                        "set both KAGGLE_USERNAME and KAGGLE_KEY, or neither")
    return (user, key) if user and key else None
