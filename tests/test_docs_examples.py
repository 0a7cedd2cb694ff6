"""docs/predict.md and docs/serve.md say that ``imgclf predict --format json`` and
``POST /predict`` give the same objects: their examples, printed together by
scripts/predict_examples.py, must show the same ones."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent
PREDICT_JSON = "$ imgclf predict photos/red.png photos/more/broken.jpg --format json --top-k 2"
CURL = "$ curl -s -F files=@photos/red.png -F files=@photos/more/broken.jpg"


def json_after(page: str, command: str) -> list[dict]:
    """The JSON list printed right after the line starting with ``command`` in ``page``."""
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    start = text.index(command)
    body = text[text.index("\n", start) + 1:]
    return json.loads(body[:body.index("\n]\n") + 2])


def test_predict_and_serve_examples_show_the_same_objects() -> None:
    printed = json_after("predict.md", PREDICT_JSON)
    served = json_after("serve.md", CURL)
    # The server names each result by the upload's file name, predict by the path given.
    assert [{**row, "path": PurePosixPath(row["path"]).name} for row in printed] == served
    assert [row["path"] for row in printed] == ["photos/red.png", "photos/more/broken.jpg"]


def test_the_table_example_agrees_with_the_json_one() -> None:
    text = (REPO / "docs" / "predict.md").read_text(encoding="utf-8")
    red, broken = json_after("predict.md", PREDICT_JSON)
    row = re.search(r"^photos/red\.png +(\w+) +([\d.]+) +(.*)$", text, re.M)
    assert row, "the table has no row of photos/red.png"
    assert row[1] == red["predicted"] and float(row[2]) == red["confidence"]
    top = [part.rsplit(" ", 1)[0] for part in row[3].split(", ")]
    assert top[:2] == [name for name, _ in red["top_k"]]
    assert f"imgclf predict: photos/more/broken.jpg: {broken['error']}" in text
