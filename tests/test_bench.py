"""The benchmark (bench/): its pure helpers, and its quick mode run end to end on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench/ is a package beside src/, not an installed one
    sys.path.insert(0, str(REPO))

from bench.framework import (  # noqa: E402
    Figure,
    Target,
    fmt_number,
    format_table,
    percentile,
    ratio,
    share,
    summary,
)
from bench.sections import SECTION_FUNCS, SECTIONS, parse_sections  # noqa: E402
from bench.sections.pipeline import baseline_epochs, recipe_kind, stages_ran  # noqa: E402
from bench.sections.serve import multipart  # noqa: E402
from imgclf.params import merge  # noqa: E402


def test_ratio_handles_missing_and_zero() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_target_on_ratio_and_on_value() -> None:
    at_least = Target(">=", 1.3)
    assert at_least.met(130.0, 100.0) is True
    assert at_least.met(129.0, 100.0) is False
    assert at_least.met(None, 100.0) is None
    at_most = Target("<=", 3.0, on="value")
    assert at_most.met(2.9, 50.0) is True
    assert at_most.met(3.1, None) is False
    assert at_least.text("img/s") == ">= 1.3x"
    assert at_most.text("s") == "<= 3 s"
    with pytest.raises(ValueError):
        Target("==", 1.0)


def test_figure_json_and_summary() -> None:
    good = Figure("1 throughput", "train small", 260.0, 200.0, "img/s",
                        Target(">=", 1.3), "a note")
    bad = Figure("5 memory", "split peak RSS", 500.0, 300.0, "MB", Target("<=", 1.25))
    info = Figure("4 incremental", "changed", 9.0, 30.0, "s")
    assert good.to_json() == {
        "section": "1 throughput", "name": "train small", "ours": 260.0, "reference": 200.0,
        "unit": "img/s", "ratio": 1.3, "target": ">= 1.3x", "met": True, "note": "a note"}
    assert info.met is None
    result = summary([good, bad, info], {"tta": "BenchError: boom"}, {"quick": True})
    assert result["targets_met"] == 1
    assert result["targets_judged"] == 2
    assert result["targets_missed"] == ["5 memory: split peak RSS"]
    assert result["errors"] == {"tta": "BenchError: boom"}
    json.dumps(result)  # one JSON line must be possible


def test_format_table_aligns_columns_and_shows_notes() -> None:
    figures = [Figure("2 overhead", "shards vs in-memory", 95.5, 100.0, "img/s",
                            Target(">=", 0.95), "best of 2"),
               Figure("6 tta", "accuracy", 0.9867, None, "acc")]
    lines = format_table(figures).splitlines()
    assert lines[0].split() == ["section", "figure", "ours", "reference", "unit", "ratio",
                                "target", "met"]
    assert "0.95x" in lines[2] and lines[2].rstrip().endswith("yes")
    assert lines[3].strip() == "(best of 2)"
    assert "0.9867" in lines[4] and lines[4].rstrip().endswith("-")
    # Numbers are right-aligned under their header.
    assert lines[0].index("ratio") + len("ratio") == lines[2].index("x ") + 1


def test_fmt_number() -> None:
    assert fmt_number(None) == "-"
    assert fmt_number(12345.6) == "12,346"
    assert fmt_number(123.45) == "123.5"
    assert fmt_number(1.234) == "1.23"
    assert fmt_number(0.98765) == "0.9877"


def test_parse_sections_keeps_run_order_and_rejects_unknown() -> None:
    assert parse_sections("tta, throughput") == ["throughput", "tta"]
    with pytest.raises(ValueError, match="speed"):
        parse_sections("throughput,speed")


def test_stages_ran_reads_dvc_output() -> None:
    out = ("Stage 'download' didn't change, skipping\n"
           "Running stage 'evaluate':\n> imgclf evaluate\nRunning stage 'x-y':\n")
    assert stages_ran(out) == ["evaluate", "x-y"]
    assert stages_ran("Data and pipelines are up to date.") == []


def test_baseline_epochs_matches_the_wall_time() -> None:
    # 20 s start-up, 30 s an epoch: 320 s of pipeline -> 10 epochs.
    assert baseline_epochs(320.0, 50.0, 30.0) == 10
    assert baseline_epochs(10.0, 50.0, 30.0) == 1


def test_recipe_kind_and_merge() -> None:
    assert recipe_kind({"model": {"arch": "mobilenet_v2"}}) == "pretrained"
    assert recipe_kind({"model": {"arch": "mobilenet_v2", "pretrained": False}}) == (
        "from scratch")
    assert recipe_kind({"model": {"arch": "medium"}}) == "from scratch"
    assert recipe_kind({}) == "from scratch"
    base = {"data": {"source": "kaggle:x", "image_size": 128}, "model": {"arch": "medium"}}
    assert merge(base, {"data": {"image_size": 64}}) == {
        "data": {"source": "kaggle:x", "image_size": 64}, "model": {"arch": "medium"}}
    assert base["data"]["image_size"] == 128  # not modified in place


def test_percentile_is_nearest_rank_and_share_splits_evenly() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 7.0, 9.0, 8.0]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 95) == 10.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    assert share(256, 32) == [8] * 32
    assert share(10, 4) == [3, 3, 2, 2]
    assert sum(share(64, 3)) == 64


def test_serve_upload_is_a_well_formed_multipart_body() -> None:
    from email.parser import BytesParser
    from email.policy import HTTP

    body, ctype = multipart("cat.jpg", b"\xff\xd8jpeg bytes")
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    (part,) = message.iter_parts()
    assert part.get_param("name", header="content-disposition") == "files"
    assert part.get_filename() == "cat.jpg"
    assert part.get_payload(decode=True) == b"\xff\xd8jpeg bytes"
    assert "serve" in parse_sections("serve,tta")


def test_every_section_is_registered_in_run_order() -> None:
    assert SECTIONS == ("throughput", "overhead", "split", "incremental", "memory", "tta",
                        "export", "serve", "backbones", "tfrecord", "scale", "cached")
    assert all(callable(SECTION_FUNCS[name]) for name in SECTIONS)


def test_quick_split_section_runs_end_to_end(tmp_path: Path,
                                             image_folder: Callable[..., Path]) -> None:
    """``bench/bench.py --quick --only split`` on generated photos: the CLI, the runner,
    the section and the final JSON line, as ``make bench`` runs them."""
    photos = image_folder(tmp_path / "photos", ["cats", "dogs", "snakes"], 12, size=32)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = os.environ | {"IMGCLF_DATA_MIRROR": str(photos)}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench.py"), "--quick", "--only", "split",
         "--tmp", str(scratch), "--json-out", str(tmp_path / "bench.json")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert result["quick"] is True and result["sections"] == ["split"]
    assert result["errors"] == {}
    (figure,) = result["figures"]
    assert figure["section"] == "3 split"
    assert figure["name"] == "split.run 64px, 36 photos"
    assert figure["unit"] == "img/s" and figure["target"] == ">= 1.8x"
    assert figure["ours"] > 0 and figure["reference"] > 0
    assert figure["ratio"] == pytest.approx(figure["ours"] / figure["reference"], abs=1e-3)
    assert result["targets_judged"] == 1
    assert list(scratch.iterdir()) == []  # the scratch folder is removed at the end
