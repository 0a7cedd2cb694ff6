"""Benchmark of the imgclf pipeline against its references, measured in the same run.

Every figure is printed beside its reference and as a ratio, because the machines are
shared and absolute times drift; see bench/README.md for what each figure means.

usage: python bench/bench.py [--quick] [--json-out FILE] [--only SECTIONS]
                             [--params FILE ...] [--repeats N]

The real photos are read from $IMGCLF_DATA_MIRROR (default ../shared/data/animals beside
the repository) and never copied into the repository; scratch data goes to a temporary
folder that is removed at the end. The last line printed is one JSON object with every
figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts bench/ itself first on sys.path, where this file
    # would shadow the bench package: put the repository there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.context import ARCHS, DEFAULT_BASELINE, DEFAULT_PARAMS, SCALE_N, Bench
from bench.framework import Figure, format_table, summary
from bench.runner import elapsed, log
from bench.sections import SECTION_FUNCS, SECTIONS, parse_sections

# Sections that run the peer baseline script / time the --params files.
USES_BASELINE = ("throughput", "tta")
USES_PARAMS = ("tta",)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (64 px, a few photos a class): checks the mechanics only")
    p.add_argument("--json-out", type=Path, help="also write the final JSON object here")
    p.add_argument("--only", type=parse_sections, default=list(SECTIONS),
                   help=f"comma-separated sections to run, of {','.join(SECTIONS)}")
    p.add_argument("--params", type=Path, nargs="+", default=list(DEFAULT_PARAMS),
                   help="params files (full, or recipes that change some keys of params.yaml) "
                   "whose full repro section 6 times, one row pair each")
    p.add_argument("--repeats", type=int, default=1,
                   help="best of N measurements in sections 1-3 (2 at least in section 2)")
    p.add_argument("--archs", type=lambda s: tuple(s.split(",")), default=ARCHS,
                   help="architectures of section 1")
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE,
                   help="the peer baseline script")
    p.add_argument("--tmp", type=Path, help="where scratch data goes (default: system temp)")
    p.add_argument("--scale-n", type=int, default=SCALE_N,
                   help="images generated for section 11 (fewer runs in minutes)")
    return p.parse_args(argv)


def run_sections(bench: Bench, sections: Sequence[str]) -> tuple[list[Figure], dict[str, str]]:
    """Run each section; one that fails is reported and the others still run."""
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    for name in sections:
        try:
            new = SECTION_FUNCS[name](bench)
        except Exception as exc:  # a failed section must not lose the others' figures
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name}: FAILED: {exc}")
            continue
        figures += new
        print(format_table(new), file=sys.stderr, flush=True)
    return figures, errors


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Only the inputs of the sections chosen must exist (split alone needs no baseline).
    needed = ([args.baseline] if set(USES_BASELINE) & set(args.only) else []) + \
        (list(args.params) if set(USES_PARAMS) & set(args.only) else [])
    for path in needed:
        if not path.is_file():
            raise SystemExit(f"bench: {path}: not found")
    info = {"quick": args.quick, "sections": args.only, "cpus": len(os.sched_getaffinity(0)),
            "load_avg_at_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-", dir=args.tmp) as tmp:
        bench = Bench(quick=args.quick, work=Path(tmp), baseline=args.baseline,
                      repeats=max(1, args.repeats), archs=args.archs,
                      params_files=[p.resolve() for p in args.params], scale_n=args.scale_n)
        figures, errors = run_sections(bench, args.only)
    info["seconds"] = round(elapsed(), 1)
    result = summary(figures, errors, info)
    print(format_table(figures))
    line = json.dumps(result)
    if args.json_out:
        args.json_out.write_text(line + "\n", encoding="utf-8")
    print(line)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
