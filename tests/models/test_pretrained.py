import hashlib
import os
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from imgclf.errors import UserError
from imgclf.models import pretrained
from imgclf.models.pretrained import NO_WEIGHTS, PINNED, PinnedWeights, weights_path
from imgclf.params import ModelParams

MOBILENET = ModelParams(arch="mobilenet_v2", alpha=0.35)


@pytest.fixture
def fake_pin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[bytes, PinnedWeights]:
    """Pin MobileNet 0.35 to a small fake file, so no test needs the real 2 MB."""
    content = b"fake weights " * 100
    pin = PinnedWeights("fake_no_top.h5", hashlib.sha256(content).hexdigest())
    monkeypatch.setitem(PINNED, ("mobilenet_v2", 0.35), pin)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return content, pin


def test_scratch_model_gets_a_note_not_weights(tmp_path: Path) -> None:
    pretrained.run(ModelParams(arch="small"), tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [NO_WEIGHTS]
    assert weights_path(ModelParams(arch="small"), tmp_path / "out") is None
    pretrained.run(ModelParams(arch="mobilenet_v2", pretrained=False), tmp_path / "out2")
    assert (tmp_path / "out2" / NO_WEIGHTS).is_file()


def test_weights_come_from_the_keras_cache(fake_pin: tuple[bytes, PinnedWeights],
                                           tmp_path: Path) -> None:
    content, pin = fake_pin
    cache = tmp_path / "keras_home" / "models"
    cache.mkdir(parents=True)
    (cache / pin.filename).write_bytes(content)
    pretrained.run(MOBILENET, tmp_path / "out")
    assert weights_path(MOBILENET, tmp_path / "out").read_bytes() == content


def test_a_corrupt_cached_file_is_refused(fake_pin: tuple[bytes, PinnedWeights],
                                          tmp_path: Path) -> None:
    _, pin = fake_pin
    cache = tmp_path / "keras_home" / "models"
    cache.mkdir(parents=True)
    (cache / pin.filename).write_bytes(b"tampered")
    with pytest.raises(UserError, match="is not the pinned"):
        pretrained.run(MOBILENET, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()


def test_weights_are_fetched_when_not_cached(fake_pin: tuple[bytes, PinnedWeights],
                                             server: tuple[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    content, pin = fake_pin
    url, root = server
    (root / pin.filename).write_bytes(content)
    monkeypatch.setattr(pretrained, "KERAS_URL", url)
    pretrained.run(MOBILENET, tmp_path / "out")
    assert weights_path(MOBILENET, tmp_path / "out").read_bytes() == content


def test_missing_everywhere_says_where_to_put_it(fake_pin: tuple[bytes, PinnedWeights],
                                                 server: tuple[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = server
    monkeypatch.setattr(pretrained, "KERAS_URL", url)  # serves nothing: 404
    with pytest.raises(UserError, match="KERAS_HOME"):
        pretrained.run(MOBILENET, tmp_path / "out")


@pytest.mark.realweights
@pytest.mark.parametrize("alpha", [0.35, 0.5])
def test_real_weights_match_their_pins(tmp_path: Path, alpha: float) -> None:
    model = ModelParams(arch="mobilenet_v2", alpha=alpha)
    pretrained.run(model, tmp_path / "out")
    assert weights_path(model, tmp_path / "out").stat().st_size > 1_000_000
