"""``unknown`` in predict's rows and in ``evaluate --data``: the session's tiny model (blue,
green, red blobs) on its own kind of photo and on a generated page of text."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from imgclf import cli
from imgclf.models.ood import generated_images
from imgclf.models.saving import read_info


@pytest.fixture
def photos(tmp_path: Path, image_folder: Callable[..., Path]) -> Path:
    """``red/`` with 3 photos of the class and one page of text (none of the classes)."""
    root = image_folder(tmp_path / "photos", ["red"], per_class=3, size=24, seed=5)
    Image.fromarray(generated_images(64, 1, seed=3)["text"][0]).save(root / "red" / "text.png")
    return root


def _json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    assert cli.main(["predict", *args, "--format", "json", "--tta", "none"]) == 0
    return {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}


def test_rows_flag_the_image_of_no_class_and_the_flag_overrides(
        photos: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(photos)  # no params.yaml here: the model file's threshold
    rows = _json([str(photos), "--model", str(tiny_model)], capsys)
    threshold = read_info(tiny_model).ood.threshold  # type: ignore[union-attr]
    assert rows["text.png"]["unknown"] is True and rows["text.png"]["ood_score"] > threshold
    assert rows["text.png"]["predicted"] in {"red", "green", "blue"}  # still the top class
    assert [rows[f"red_{i:03d}.png"]["unknown"] for i in range(3)] == [False] * 3
    high = _json([str(photos), "--model", str(tiny_model), "--unknown-threshold", "1e12"],
                 capsys)
    assert not any(r["unknown"] for r in high.values())
    (photos / "params.yaml").write_text("ood:\n  threshold: -1.0e+12\n")
    low = _json([str(photos), "--model", str(tiny_model)], capsys)
    assert all(r["unknown"] for r in low.values())  # ood.threshold of params.yaml

    assert cli.main(["predict", str(photos), "--model", str(tiny_model), "--format", "csv",
                     "--unknown-threshold", str(threshold)]) == 0
    table = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(
        capsys.readouterr().out))}
    assert table["text.png"]["unknown"] == "true" and table["red_000.png"]["unknown"] == "false"
    assert cli.main(["predict", str(photos / "red" / "text.png"), "--model", str(tiny_model),
                     "--unknown-threshold", str(threshold)]) == 0
    assert "(unknown)" in capsys.readouterr().out.splitlines()[1]


def test_evaluate_data_counts_the_unknown_images(photos: Path, tiny_model: Path,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--data", str(photos), "--model", str(tiny_model),
                     "--params", str(tmp_path / "none.yaml"), "--metrics", str(metrics),
                     "--plots", str(tmp_path / "plots"),
                     "--predictions", str(tmp_path / "p.csv")]) in (0, None)
    unknown = json.loads(metrics.read_text())["folder"]["unknown"]
    assert unknown["count"] == 1 and unknown["share"] == 0.25
    assert "1 unknown" in capsys.readouterr().out
