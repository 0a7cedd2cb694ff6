"""The progress bars of the long loops (downloading, extracting, hashing, copying,
decoding), all drawn alike.

On stderr, so stdout keeps the results; redrawn at most twice a second, so the logs of
``dvc repro`` and CI are not flooded; cleared when done, since each stage prints a line
saying what it did.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm[T]:
    """``tqdm(iterable, **kwargs)`` with the project's settings (``desc``, ``unit``,
    ``total`` ... go in ``kwargs``)."""
    # sys.stderr read at each call, not once: tests and tools may replace it.
    return tqdm(iterable, mininterval=0.5, file=sys.stderr, leave=False, **kwargs)
