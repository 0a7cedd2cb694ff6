import hashlib
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from imgclf.errors import UserError
from imgclf.models import pretrained, weights
from imgclf.models.weights import NO_WEIGHTS, PINNED, PinnedWeights, weights_path
from imgclf.params import BACKBONES, ModelParams

MOBILENET = ModelParams(arch="mobilenet_v2", alpha=0.35)


@pytest.fixture
def fake_pin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[bytes, PinnedWeights]:
    """Pin MobileNet 0.35 to a small fake file, so no test needs the real 2 MB."""
    content = b"fake weights " * 100
    pin = PinnedWeights("fake_no_top.h5", hashlib.sha256(content).hexdigest(), "mobilenet_v2/")
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
    (root / "mobilenet_v2").mkdir()
    (root / "mobilenet_v2" / pin.filename).write_bytes(content)
    monkeypatch.setattr(weights, "KERAS_URL", url)
    pretrained.run(MOBILENET, tmp_path / "out")
    assert weights_path(MOBILENET, tmp_path / "out").read_bytes() == content


def test_missing_everywhere_says_where_to_put_it(fake_pin: tuple[bytes, PinnedWeights],
                                                 server: tuple[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = server
    monkeypatch.setattr(weights, "KERAS_URL", url)  # serves nothing: 404
    with pytest.raises(UserError, match="KERAS_HOME"):
        pretrained.run(MOBILENET, tmp_path / "out")


@pytest.mark.realweights
@pytest.mark.parametrize("alpha", [0.35, 0.5])
def test_real_weights_match_their_pins(tmp_path: Path, alpha: float) -> None:
    model = ModelParams(arch="mobilenet_v2", alpha=alpha)
    pretrained.run(model, tmp_path / "out")
    assert weights_path(model, tmp_path / "out").stat().st_size > 1_000_000


def _keras_pins() -> dict[str, tuple[str, str]]:
    """arch -> (no-top file URL, hash) as the installed Keras' own sources build them."""
    from keras.src.applications import convnext, efficientnet_v2, mobilenet_v3, resnet

    v3 = "weights_mobilenet_v3_{}_224_1.0_float_no_top_v2.h5"
    resnet_file = "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return {
        "mobilenet_v3_small": (mobilenet_v3.BASE_WEIGHT_PATH + v3.format("small"),
                               mobilenet_v3.WEIGHTS_HASHES["small_224_1.0_float"][1]),
        "mobilenet_v3_large": (mobilenet_v3.BASE_WEIGHT_PATH + v3.format("large"),
                               mobilenet_v3.WEIGHTS_HASHES["large_224_1.0_float"][1]),
        "efficientnetv2_b0": (efficientnet_v2.BASE_WEIGHTS_PATH + "efficientnetv2-b0_notop.h5",
                              efficientnet_v2.WEIGHTS_HASHES["b0"][1]),
        "efficientnetv2_s": (efficientnet_v2.BASE_WEIGHTS_PATH + "efficientnetv2-s_notop.h5",
                             efficientnet_v2.WEIGHTS_HASHES["-s"][1]),
        "resnet50_v2": (resnet.BASE_WEIGHTS_PATH + resnet_file,
                        resnet.WEIGHTS_HASHES["resnet50v2"][1]),
        "convnext_tiny": (convnext.BASE_WEIGHTS_PATH + "convnext_tiny_notop.h5",
                          convnext.WEIGHTS_HASHES["convnext_tiny"][1]),
    }


def test_every_backbone_has_the_pin_keras_itself_uses() -> None:
    keras_pins = _keras_pins()
    assert set(keras_pins) | {"mobilenet_v2"} == set(BACKBONES)
    for arch, (url, digest) in keras_pins.items():
        pin = weights.pinned_for(ModelParams(arch=arch))
        assert pin is not None and (pin.url, pin.digest) == (url, digest), arch
        assert pin.algorithm == ("sha256" if len(digest) == 64 else "md5")
    for alpha in (0.35, 0.5):
        pin = weights.pinned_for(ModelParams(arch="mobilenet_v2", alpha=alpha))
        assert pin is not None and pin.url.startswith(weights.KERAS_URL + "mobilenet_v2/")


@pytest.mark.parametrize("arch", sorted(set(BACKBONES) - {"mobilenet_v2"}))
def test_each_backbone_is_fetched_and_verified(arch: str, server: tuple[str, Path],
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated file under the backbone's own name and folder, pinned by its hash in
    the algorithm Keras uses for that file; a wrong hash is refused naming the file."""
    url, root = server
    real = weights.pinned_for(ModelParams(arch=arch))
    assert real is not None
    content = f"generated {arch} weights ".encode() * 50
    pin = PinnedWeights(real.filename, hashlib.new(real.algorithm, content).hexdigest(),
                        real.folder)
    monkeypatch.setitem(PINNED, (arch, None), pin)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    monkeypatch.setattr(weights, "KERAS_URL", url)
    (root / real.folder).mkdir()
    (root / real.folder / real.filename).write_bytes(content)
    model = ModelParams(arch=arch)
    pretrained.run(model, tmp_path / "out")
    assert weights_path(model, tmp_path / "out").read_bytes() == content
    assert weights_path(model, tmp_path / "out").name == real.filename

    wrong = PinnedWeights(real.filename, "0" * len(real.digest), real.folder)
    monkeypatch.setitem(PINNED, (arch, None), wrong)
    with pytest.raises(UserError, match=f"{real.algorithm} .* is not the pinned .* of "
                       f"{real.filename}"):
        pretrained.run(model, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_a_backbone_from_scratch_needs_no_weights(tmp_path: Path) -> None:
    model = ModelParams(arch="convnext_tiny", pretrained=False)
    pretrained.run(model, tmp_path / "out")
    assert weights_path(model, tmp_path / "out") is None
    assert (tmp_path / "out" / NO_WEIGHTS).is_file()
