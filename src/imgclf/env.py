"""Environment variables and the ``.env`` file, read one way everywhere: empty is unset.

``docker compose`` passes a key of ``.env`` that has no value as an empty variable, and
shells export ``VAR=`` just as easily; a tool that then sees ``WANDB_MODE=""`` refuses
it. So an empty (or all-blank) value of a variable this project reads means "not set",
both in our own code (``get``) and, after ``drop_empty``, in the libraries that read the
environment themselves (W&B, Keras).

Every command starts with ``prepare``: it also fills in each of our variables that the
environment lacks from the project's ``.env`` (the environment wins), before Keras is
imported, since Keras reads ``KERAS_HOME`` once, at import.
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


# Read from .env only by the code that needs them (imgclf.data.kaggle, the W&B tracker),
# so they never reach the process environment and the children it starts.
SECRETS = frozenset({"KAGGLE_KEY", "WANDB_API_KEY"})


def project_dotenv(environ: Mapping[str, str] | None = None) -> Path:
    """The project's ``.env``: in ``$DVC_ROOT`` when a DVC stage runs us, else in the working
    folder."""
    return Path(get("DVC_ROOT", environ) or ".") / ".env"


def load_dotenv(environ: MutableMapping[str, str] | None = None,
                path: str | os.PathLike[str] | None = None) -> list[str]:
    """Fill in from ``path`` each of our variables (``ours`` but not ``SECRETS``) not set.

    ``environ`` defaults to the process's, ``path`` to ``project_dotenv``. The
    environment wins. Run before Keras is imported: it reads ``KERAS_HOME`` at import.
    Returns the names set.
    """
    environ = os.environ if environ is None else environ
    values = dotenv(project_dotenv(environ) if path is None else path)
    added = sorted(k for k in values if ours(k) and k not in SECRETS and not get(k, environ))
    for name in added:
        environ[name] = values[name]
    return added


def gpu_absent(environ: Mapping[str, str] | None = None, dev: Path = Path("/dev")) -> bool:
    """Whether this machine shows no NVIDIA GPU: no ``/dev/nvidia*`` and no CUDA_VISIBLE_DEVICES."""
    environ = os.environ if environ is None else environ
    return "CUDA_VISIBLE_DEVICES" not in environ and not any(dev.glob("nvidia*"))


def quiet_tensorflow(environ: MutableMapping[str, str] | None = None) -> None:
    """Keep TensorFlow's C++ log to what a user needs; run before TensorFlow is imported.

    TensorFlow logs ``failed call to cuInit`` (an ERROR line) on every machine without a
    GPU; that probe's failure is expected there, so level 3 hides C++ errors only when
    no GPU is present (else 2: warnings hidden). Python exceptions still show; an
    explicit TF_CPP_MIN_LOG_LEVEL wins.
    """
    environ = os.environ if environ is None else environ
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if gpu_absent(environ) else "2")


def prepare(environ: MutableMapping[str, str] | None = None) -> None:
    """The environment a command starts from: blanks dropped, ``.env`` read, TensorFlow quieter."""
    environ = os.environ if environ is None else environ
    drop_empty(environ)
    load_dotenv(environ)
    quiet_tensorflow(environ)
