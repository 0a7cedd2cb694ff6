"""``unknown`` in predict's rows and in ``evaluate --data``: the session's tiny model (blue,
green, red blobs) on its own kind of photo and on a generated page of text, each row
flagged by its score against the threshold in force (the model file's, ``ood.threshold``
or ``--unknown-threshold``)."""

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


def _between(scores: dict[str, float]) -> tuple[float, str, str]:
    """A threshold between the highest and the lowest score, and those images' names.

    The session's tiny model (4 epochs on blobs) is a poor detector: it may be surer of a
    page of text than of a photo of its own class. How well the score finds unknown
    images is measured by the ood stage (docs/ood.md); these tests check the flag: a row
    is unknown exactly when its score is above the threshold in force.
    """
    high, low = max(scores, key=scores.get), min(scores, key=scores.get)
    assert scores[high] > scores[low], scores
    return (scores[high] + scores[low]) / 2, high, low


def test_rows_flag_the_scores_above_the_threshold_and_the_flag_overrides(
        photos: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(photos)  # no params.yaml here: the model file's threshold
    rows = _json([str(photos), "--model", str(tiny_model)], capsys)
    threshold = read_info(tiny_model).ood.threshold  # type: ignore[union-attr]
    assert len(rows) == 4
    for row in rows.values():
        assert row["unknown"] is (row["ood_score"] > threshold), row
        assert row["predicted"] in {"red", "green", "blue"}  # still the top class
    middle, high, low = _between({name: r["ood_score"] for name, r in rows.items()})
    given = _json([str(photos), "--model", str(tiny_model), "--unknown-threshold",
                   str(middle)], capsys)
    assert given[high]["unknown"] is True and given[low]["unknown"] is False
    assert {n: r["predicted"] for n, r in given.items()} == {
        n: r["predicted"] for n, r in rows.items()}
    huge = _json([str(photos), "--model", str(tiny_model), "--unknown-threshold", "1e12"],
                 capsys)
    assert not any(r["unknown"] for r in huge.values())
    (photos / "params.yaml").write_text("ood:\n  threshold: -1.0e+12\n")
    low_rows = _json([str(photos), "--model", str(tiny_model)], capsys)
    assert all(r["unknown"] for r in low_rows.values())  # ood.threshold of params.yaml
    (photos / "params.yaml").unlink()

    assert cli.main(["predict", str(photos), "--model", str(tiny_model), "--format", "csv",
                     "--unknown-threshold", str(middle)]) == 0
    table = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(
        capsys.readouterr().out))}
    assert table[high]["unknown"] == "true" and table[low]["unknown"] == "false"
    found = next(photos.rglob(high))
    assert cli.main(["predict", str(found), "--model", str(tiny_model),
                     "--unknown-threshold", str(middle)]) == 0
    assert "(unknown)" in capsys.readouterr().out.splitlines()[1]


def test_evaluate_data_counts_the_unknown_images(photos: Path, tiny_model: Path,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(photos)
    scores = {n: r["ood_score"] for n, r in _json([str(photos), "--model", str(tiny_model)],
                                                   capsys).items()}
    middle, _, _ = _between(scores)
    above = sum(score > middle for score in scores.values())
    params = tmp_path / "params.yaml"
    params.write_text(f"ood:\n  threshold: {middle!r}\n")
    metrics = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--data", str(photos), "--model", str(tiny_model),
                     "--params", str(params), "--metrics", str(metrics),
                     "--plots", str(tmp_path / "plots"),
                     "--predictions", str(tmp_path / "p.csv")]) in (0, None)
    unknown = json.loads(metrics.read_text())["folder"]["unknown"]
    assert 1 <= above <= 3 and unknown["count"] == above and unknown["share"] == above / 4
    assert f"{above} unknown" in capsys.readouterr().out
