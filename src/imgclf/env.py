"""Environment variables and the ``.env`` file, read one way everywhere: empty is unset.

``docker compose`` passes a key of ``.env`` that has no value as an empty variable, and
shells export ``VAR=`` just as easily; a tool that then sees ``WANDB_MODE=""`` refuses
it. So an empty (or all-blank) value of a variable this project reads means "not set",
both in our own code (``get``) and, after ``drop_empty``, in the libraries that read the
environment themselves (W&B, Keras).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

# The variables this project and the libraries it drives read (see .env.example).
PREFIXES = ("IMGCLF_", "KAGGLE_", "WANDB_")
NAMES = frozenset({"KERAS_HOME", "TF_CONFIG"})


def ours(name: str) -> bool:
    """Whether ``name`` is a variable whose empty value must count as unset."""
    return name in NAMES or name.startswith(PREFIXES)


def get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``name``'s value, stripped, or None when it is unset or blank."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None


def dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """The assignments of a ``.env`` file with a value (python-dotenv's parsing); {} if none.

    Quotes, ``export`` prefixes and ``# comments`` after a value are handled as a
    shell would; keys without a value are left out, as they would be unset.
    """
    from dotenv import dotenv_values  # only where a .env file is read

    path = Path(path)
    if not path.is_file():
        return {}
    return {k: v.strip() for k, v in dotenv_values(path).items() if v and v.strip()}


def lookup(name: str, environ: Mapping[str, str] | None, dotenv_path: str | os.PathLike[str],
           ) -> str | None:
    """``name`` from the environment, else from the ``.env`` file; None if set in neither."""
    return get(name, environ) or dotenv(dotenv_path).get(name)


def drop_empty(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove this project's blank variables from ``environ`` (default: the process's).

    Returns the names removed. Run first thing, before W&B or Keras read them.
    """
    environ = os.environ if environ is None else environ
    blank = sorted(k for k, v in environ.items() if ours(k) and not v.strip())
    for name in blank:
        del environ[name]
    return blank
