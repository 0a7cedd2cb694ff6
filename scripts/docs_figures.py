"""Rewrite the figures of README.md and docs/*.md that come from metrics/.

A figure taken from a metrics file is marked where it stands, in an HTML comment that
Markdown does not show::

    <!-- metric: metrics/eval.json test.accuracy .3f -->0.980<!-- /metric -->

that is: the JSON file (from the repository root), the dotted key in it, and a Python
format spec for the number. A key may be a product of keys, ``test.accuracy*test.n``
with ``.0f``, for "441 of 450". ``python scripts/docs_figures.py`` (``make docs``)
writes each marked figure from the metrics; ``--check`` changes nothing and exits 1
naming every figure that disagrees (tests/test_docs_figures.py runs it). So after a
new ``make repro``, ``make docs`` brings the pages up to date in one command.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARK = re.compile(r"<!-- metric: (?P<file>\S+) (?P<key>\S+) (?P<spec>\S+) -->"
                  r"(?P<value>[^<]*)<!-- /metric -->")


def pages(repo: Path = REPO) -> list[Path]:
    """The pages whose figures are kept: README.md and every page under docs/."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Figure:
    """One marked figure: where it is (``page:line``), what it says, what it should say."""

    where: str
    key: str
    file: str
    shown: str
    expected: str


def lookup(metrics: object, key: str, file: str) -> float:
    """The number at dotted ``key`` of ``metrics``; ``a*b`` multiplies two keys."""
    value = 1.0
    for part in key.split("*"):
        node = metrics
        for name in part.split("."):
            if not isinstance(node, dict) or name not in node:
                raise KeyError(f"{file} has no key {part}")
            node = node[name]
        if isinstance(node, bool) or not isinstance(node, int | float):
            raise KeyError(f"{file}: {part} is not a number")
        value *= node
    return value


def formatted(value: float, spec: str) -> str:
    """``value`` written with the format ``spec`` (``d`` takes a whole number)."""
    if spec.endswith("d"):
        if not math.isclose(value, round(value)):
            raise ValueError(f"{value} is not a whole number for format {spec!r}")
        return format(round(value), spec)
    return format(value, spec)


class Metrics:
    """The metrics files, each read once, from the repository ``repo``."""

    def __init__(self, repo: Path) -> None:
        self.repo, self._files = repo, {}

    def figure(self, file: str, key: str, spec: str) -> str:
        if file not in self._files:
            path = self.repo / file
            if not path.is_file():
                raise FileNotFoundError(f"{file}: not found; run `make repro` first")
            self._files[file] = json.loads(path.read_text(encoding="utf-8"))
        return formatted(lookup(self._files[file], key, file), spec)


def figures(page: Path, metrics: Metrics, repo: Path = REPO) -> Iterator[Figure]:
    """Every marked figure of ``page``, with the value its metrics file gives."""
    text = page.read_text(encoding="utf-8")
    name = page.relative_to(repo) if page.is_relative_to(repo) else page
    for match in MARK.finditer(text):
        where = f"{name}:{text.count(chr(10), 0, match.start()) + 1}"
        try:
            expected = metrics.figure(match["file"], match["key"], match["spec"])
        except (OSError, KeyError, ValueError) as e:
            raise SystemExit(f"{where}: {str(e).strip(chr(39))}; fix the marker") from None
        yield Figure(where, match["key"], match["file"], match["value"], expected)


def stale(paths: Iterable[Path], repo: Path = REPO) -> list[str]:
    """One line for each marked figure that disagrees with metrics/ (none: all agree)."""
    metrics = Metrics(repo)
    return [f"{f.where}: {f.key} of {f.file} is {f.expected}, the page says {f.shown!r}"
            for page in paths for f in figures(page, metrics, repo) if f.shown != f.expected]


def rewrite(page: Path, repo: Path = REPO) -> int:
    """Write every marked figure of ``page`` from metrics/; the number of figures changed."""
    metrics, changed = Metrics(repo), 0
    text = page.read_text(encoding="utf-8")

    def fill(match: re.Match[str]) -> str:
        nonlocal changed
        value = metrics.figure(match["file"], match["key"], match["spec"])
        changed += value != match["value"]
        return match[0].replace(f"-->{match['value']}<!--", f"-->{value}<!--", 1)

    new = MARK.sub(fill, text)
    if new != text:
        page.write_text(new, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a marked figure disagrees")
    args = parser.parse_args(argv)
    paths = pages()
    problems = stale(paths)  # also checks every marker before anything is written
    if args.check:
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("docs_figures: run `make docs` to rewrite them", file=sys.stderr)
        return 1 if problems else 0
    changed = sum(rewrite(page) for page in paths)
    print(f"docs_figures: {changed} figure(s) rewritten from metrics/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
