"""The registry of sections, in run order: each is one function ``Bench -> [Figure]``."""

from __future__ import annotations

from collections.abc import Callable

from bench.context import Bench
from bench.framework import Figure
from bench.sections.backbones import section_backbones
from bench.sections.cached import section_cached
from bench.sections.export import section_export
from bench.sections.features_memory import section_features_memory
from bench.sections.memory import section_memory
from bench.sections.pipeline import section_incremental, section_tta
from bench.sections.scale import section_scale
from bench.sections.serve import section_serve
from bench.sections.serve_limits import section_serve_limits
from bench.sections.split import section_split
from bench.sections.tfrecord import section_tfrecord
from bench.sections.throughput import section_overhead, section_throughput

SECTION_FUNCS: dict[str, Callable[[Bench], list[Figure]]] = {
    "throughput": section_throughput, "overhead": section_overhead, "split": section_split,
    "incremental": section_incremental, "memory": section_memory, "tta": section_tta,
    "export": section_export,
    "serve": section_serve, "serve_limits": section_serve_limits,
    "backbones": section_backbones,
    "tfrecord": section_tfrecord, "scale": section_scale,
    "cached": section_cached, "features_memory": section_features_memory,
}
SECTIONS = tuple(SECTION_FUNCS)  # the names, in run order


def parse_sections(text: str) -> list[str]:
    """``--only`` value -> section names in run order; raise ValueError on an unknown one."""
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]
