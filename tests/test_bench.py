"""Smoke test of bench/bench.py's pure helpers; the benchmark itself is never run here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("imgclf_bench", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = _load()


def test_ratio_handles_missing_and_zero() -> None:
    assert bench.ratio(3.0, 2.0) == 1.5
    assert bench.ratio(None, 2.0) is None
    assert bench.ratio(1.0, None) is None
    assert bench.ratio(1.0, 0.0) is None


def test_target_on_ratio_and_on_value() -> None:
    at_least = bench.Target(">=", 1.3)
    assert at_least.met(130.0, 100.0) is True
    assert at_least.met(129.0, 100.0) is False
    assert at_least.met(None, 100.0) is None
    at_most = bench.Target("<=", 3.0, on="value")
    assert at_most.met(2.9, 50.0) is True
    assert at_most.met(3.1, None) is False
    assert at_least.text("img/s") == ">= 1.3x"
    assert at_most.text("s") == "<= 3 s"
    with pytest.raises(ValueError):
        bench.Target("==", 1.0)


def test_figure_json_and_summary() -> None:
    good = bench.Figure("1 throughput", "train small", 260.0, 200.0, "img/s",
                        bench.Target(">=", 1.3), "a note")
    bad = bench.Figure("5 memory", "split peak RSS", 500.0, 300.0, "MB", bench.Target("<=", 1.25))
    info = bench.Figure("4 incremental", "changed", 9.0, 30.0, "s")
    assert good.to_json() == {
        "section": "1 throughput", "name": "train small", "ours": 260.0, "reference": 200.0,
        "unit": "img/s", "ratio": 1.3, "target": ">= 1.3x", "met": True, "note": "a note"}
    assert info.met is None
    result = bench.summary([good, bad, info], {"tta": "BenchError: boom"}, {"quick": True})
    assert result["targets_met"] == 1
    assert result["targets_judged"] == 2
    assert result["targets_missed"] == ["5 memory: split peak RSS"]
    assert result["errors"] == {"tta": "BenchError: boom"}
    json.dumps(result)  # one JSON line must be possible


def test_format_table_aligns_columns_and_shows_notes() -> None:
    figures = [bench.Figure("2 overhead", "shards vs in-memory", 95.5, 100.0, "img/s",
                            bench.Target(">=", 0.95), "best of 2"),
               bench.Figure("6 tta", "accuracy", 0.9867, None, "acc")]
    lines = bench.format_table(figures).splitlines()
    assert lines[0].split() == ["section", "figure", "ours", "reference", "unit", "ratio",
                                "target", "met"]
    assert "0.95x" in lines[2] and lines[2].rstrip().endswith("yes")
    assert lines[3].strip() == "(best of 2)"
    assert "0.9867" in lines[4] and lines[4].rstrip().endswith("-")
    # Numbers are right-aligned under their header.
    assert lines[0].index("ratio") + len("ratio") == lines[2].index("x ") + 1


def test_fmt_number() -> None:
    assert bench.fmt_number(None) == "-"
    assert bench.fmt_number(12345.6) == "12,346"
    assert bench.fmt_number(123.45) == "123.5"
    assert bench.fmt_number(1.234) == "1.23"
    assert bench.fmt_number(0.98765) == "0.9877"


def test_parse_sections_keeps_run_order_and_rejects_unknown() -> None:
    assert bench.parse_sections("tta, throughput") == ["throughput", "tta"]
    with pytest.raises(ValueError, match="speed"):
        bench.parse_sections("throughput,speed")


def test_stages_ran_reads_dvc_output() -> None:
    out = ("Stage 'download' didn't change, skipping\n"
           "Running stage 'evaluate':\n> imgclf evaluate\nRunning stage 'x-y':\n")
    assert bench.stages_ran(out) == ["evaluate", "x-y"]
    assert bench.stages_ran("Data and pipelines are up to date.") == []


def test_baseline_epochs_matches_the_wall_time() -> None:
    # 20 s start-up, 30 s an epoch: 320 s of pipeline -> 10 epochs.
    assert bench.baseline_epochs(320.0, 50.0, 30.0) == 10
    assert bench.baseline_epochs(10.0, 50.0, 30.0) == 1


def test_recipe_kind_and_merge() -> None:
    assert bench.recipe_kind({"model": {"arch": "mobilenet_v2"}}) == "pretrained"
    assert bench.recipe_kind({"model": {"arch": "mobilenet_v2", "pretrained": False}}) == (
        "from scratch")
    assert bench.recipe_kind({"model": {"arch": "medium"}}) == "from scratch"
    assert bench.recipe_kind({}) == "from scratch"
    base = {"data": {"source": "kaggle:x", "image_size": 128}, "model": {"arch": "medium"}}
    assert bench.merge(base, {"data": {"image_size": 64}}) == {
        "data": {"source": "kaggle:x", "image_size": 64}, "model": {"arch": "medium"}}
    assert base["data"]["image_size"] == 128  # not modified in place


def test_percentile_is_nearest_rank_and_share_splits_evenly() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 7.0, 9.0, 8.0]
    assert bench.percentile(values, 50) == 5.0
    assert bench.percentile(values, 95) == 10.0
    assert bench.percentile(values, 0) == 1.0
    assert bench.percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        bench.percentile([], 50)
    assert bench.share(256, 32) == [8] * 32
    assert bench.share(10, 4) == [3, 3, 2, 2]
    assert sum(bench.share(64, 3)) == 64


def test_serve_upload_is_a_well_formed_multipart_body() -> None:
    from email.parser import BytesParser
    from email.policy import HTTP

    body, ctype = bench.multipart("cat.jpg", b"\xff\xd8jpeg bytes")
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    (part,) = message.iter_parts()
    assert part.get_param("name", header="content-disposition") == "files"
    assert part.get_filename() == "cat.jpg"
    assert part.get_payload(decode=True) == b"\xff\xd8jpeg bytes"
    assert "serve" in bench.parse_sections("serve,tta")
