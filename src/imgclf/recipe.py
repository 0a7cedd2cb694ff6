"""``imgclf recipe FILE``: a params overlay (such as recipes/from-scratch.yaml) as flags.

A recipe file holds only the params that differ from params.yaml. This turns it into
``dvc exp run`` flags, ``-S key=value`` for each of its keys, after checking that
params.yaml with those values passes validation, so ``flags=$(imgclf recipe FILE) &&
dvc exp run $flags`` (``make scratch``) runs the recipe as an experiment and a typo
stops here, naming the key.
"""

from __future__ import annotations

import os
from typing import Any

from imgclf.params import ParamsError, flat_keys, merge, params_from_dict, read_yaml


def hydra_value(key: str, value: Any) -> str:
    """``value`` as DVC's ``--set-param`` (Hydra's override grammar) reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str) and value and all(c.isalnum() or c in "_-./:" for c in value):
        return value
    raise ParamsError(f"{key}: {value!r} cannot be passed safely as a dvc exp run -S flag "
                      "here; give it to dvc exp run by hand or set it in params.yaml")


def set_param_flags(recipe: str | os.PathLike[str],
                    params: str | os.PathLike[str] = "params.yaml") -> list[str]:
    """``["-S", "data.image_size=96", ...]`` for each key of ``recipe``, in file order."""
    overlay = read_yaml(recipe, missing="see recipes/ for the recipes that come with imgclf")
    if not isinstance(overlay, dict) or not overlay:
        raise ParamsError(f"{recipe}: expected a mapping of the params to change, such as "
                          "'model: {arch: compact}'")
    base = read_yaml(params)
    params_from_dict(merge(base if isinstance(base, dict) else {}, overlay),
                     source=f"{params} with {recipe}")
    flags: list[str] = []
    for key, value in flat_keys(overlay):
        flags += ["-S", f"{key}={hydra_value(key, value)}"]
    return flags
