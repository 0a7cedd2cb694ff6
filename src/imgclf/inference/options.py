"""The defaults of ``imgclf predict``'s options, in a module that imports nothing.

The CLI shows them in ``--help`` (and ``imgclf serve`` takes its ``--top-k`` from here);
it must not import NumPy or Pillow to do so, since every pipeline stage builds the same
parser.
"""

from typing import Literal

TOP_K = 3  # classes listed per image
BATCH_SIZE = 32  # images per model call
Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")
