"""What this machine lends the process: the cores it may run on."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity (a container's or ``taskset``'s
    limit, as Keras counts them), or every core where the OS has no affinity (macOS,
    Windows)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1
