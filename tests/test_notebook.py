"""``notebooks/data_analysis.ipynb`` runs headless on a generated split, so it cannot rot.

The notebook is executed with nbclient in the venv's ``python3`` kernel (ipykernel),
pointed by ``IMGCLF_PREPARED`` at a split made here from generated images with the
things it explains: a skipped file, a duplicate pair, images of other shapes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

from imgclf.data import split
from imgclf.params import DataParams, SplitParams

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "data_analysis.ipynb"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory,
             image_folder: Callable[..., Path]) -> Path:
    root = tmp_path_factory.mktemp("notebook")
    raw = image_folder(root / "raw", ["ant", "bee", "cow"], per_class=10)
    shutil.copy(raw / "ant" / "ant_000.png", raw / "ant" / "copy_of_ant_000.png")
    (raw / "bee" / "empty.jpg").write_bytes(b"")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (24, 48, 3), np.uint8)).save(raw / "cow" / "wide.png")
    split.run(DataParams(image_size=16), SplitParams(train=0.6, val=0.2, test=0.2, seed=0),
              raw, root / "prepared")
    return root / "prepared"


def test_notebook_stays_clean() -> None:
    """Committed without outputs, so its diffs show only what a person changed."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.slow
def test_notebook_runs_on_a_generated_split(prepared: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLF_PREPARED", str(prepared))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    text += "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert str(prepared) in text and "ant, bee, cow" in text
    assert "| ant | " in text  # the class balance table
    assert "empty file" in text  # the skipped file and its reason
    assert "1 duplicate groups" in text and "groups across two splits: 0" in text
    assert "48x24 (1)" in text  # the wide image's original size
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 2 + 3  # class balance, image sizes, a sample grid per class
