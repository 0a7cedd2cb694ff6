"""The pretrained stage: pinned ImageNet weights of a backbone -> data/pretrained/.

Weights are an input like the data, so they get a stage of their own: DVC hashes the
file and ``train`` depends on it. Each file is looked up first in Keras' own cache
(``$KERAS_HOME/models/``, default ``~/.keras/models/``), then fetched from Keras'
official URL, and must match the hash Keras pins for it either way (the table is
``imgclf.models.weights``).

Not ``keras.utils.get_file(file_hash=...)``, which does the cache look-up and the hash
check too: it would import TensorFlow into a stage that computes nothing, and make the
runtime lock its dep; it has no socket timeout (``fetch_url`` has one, with messages that
say what to do); it writes into the user's own Keras cache; and on a hash mismatch it
downloads again without a word instead of naming the bad file.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
from pathlib import Path

from imgclf import env
from imgclf.errors import UserError
from imgclf.fetch import fetch_url
from imgclf.fsutil import atomic_dir, file_digest
from imgclf.models.weights import NO_WEIGHTS, pinned_for
from imgclf.params import ModelParams


def keras_cache() -> Path:
    """Keras' cache of downloaded weights: ``$KERAS_HOME/models`` (default ~/.keras)."""
    return Path(env.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def run(model: ModelParams, out: str | os.PathLike[str]) -> None:
    pinned = pinned_for(model)
    with atomic_dir(out) as tmp:
        if pinned is None:
            (tmp / NO_WEIGHTS).write_text(
                f"model.arch {model.arch} (pretrained: {model.pretrained}) starts from "
                "random weights\n", encoding="utf-8")
            print(f"pretrained: {model.arch} needs no pretrained weights")
            return
        dest = tmp / pinned.filename
        cached = keras_cache() / pinned.filename
        if cached.is_file():
            shutil.copyfile(cached, dest)
            origin = str(cached)
        else:
            hint = (f"put {pinned.filename} in {keras_cache()} (set KERAS_HOME to a folder "
                    "whose models/ sub-folder has it)")
            try:
                fetch_url(pinned.url, dest, hint)
            except urllib.error.HTTPError as exc:
                raise UserError(f"{pinned.url} answered HTTP {exc.code}; {hint}") from None
            origin = pinned.url
        got = file_digest(dest, pinned.algorithm)
        if got != pinned.digest:
            raise UserError(f"{origin}: {pinned.algorithm} {got} is not the pinned "
                            f"{pinned.digest} of {pinned.filename}; delete the file and run "
                            "the stage again to fetch a good copy")
    print(f"pretrained: {pinned.filename} from {origin}, {pinned.algorithm} verified",
          file=sys.stderr)
