"""The download stage end to end, on real files and a local HTTP server (never the internet)."""

from __future__ import annotations

import base64
import io
import json
import socket
import stat
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgclf import cli
from imgclf.data import download
from imgclf.data.download import KnownDataset, run
from imgclf.data.layout import SKIPPED_LIST
from imgclf.errors import UserError
from imgclf.fetch import fetch_url, http_timeout
from imgclf.params import DEFAULT_SOURCE, DataParams

FILES_A = {"cats/a1.jpg": b"cat one", "cats/a2.jpg": b"cat two", "dogs/d1.jpg": b"dog one"}
CLOSED_PORT = "http://127.0.0.1:1"

# Every test runs without inherited mirror, Kaggle or timeout variables, in an empty
# working folder.
pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture(autouse=True)
def no_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMGCLF_HTTP_TIMEOUT", raising=False)


def fetch(source: str, out: str | Path = "data/raw", **kwargs) -> None:
    run(DataParams(source=source), out, **kwargs)


def leftovers(folder: Path) -> list[str]:
    """Temporary names the stage may have left next to its output."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def zip_bytes(files: dict[str, bytes], prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(prefix + name, data)
    return buffer.getvalue()


@pytest.fixture
def pinned(tmp_path: Path, kit):
    """A fake known dataset: its files, a manifest of them, and a registry naming it."""
    files = kit.dataset_files({"cats": 3, "dogs": 2, "snakes": 2})
    manifest = tmp_path / "fake.sha256"
    manifest.write_text(kit.manifest_of(files))

    def registry(key: str = DEFAULT_SOURCE) -> dict[str, KnownDataset]:
        return {key: KnownDataset(manifest, "fake")}

    return files, registry


@pytest.fixture
def mirror(tmp_path: Path, kit, pinned, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A mirror folder laid out like /work/shared/data/animals, with a few extras."""
    files, _ = pinned
    root = kit.write_tree(tmp_path / "mirror", files)
    (root / "SHA256SUMS").write_text(kit.manifest_of(files))
    (root / "SOURCE.md").write_text("# where it came from\n")
    (root / "cats/not-pinned.jpg").write_bytes(b"extra")
    monkeypatch.setenv("IMGCLF_DATA_MIRROR", str(root))
    # Were the mirror ignored, the stage would try this closed port and fail.
    monkeypatch.setenv("IMGCLF_KAGGLE_URL", CLOSED_PORT)
    return root


# --- local folders and archives -----------------------------------------------------------


def test_local_folder_is_copied_not_moved(tmp_path: Path, kit, clean_env: Path) -> None:
    src = kit.write_tree(tmp_path / "src", FILES_A)
    (src / "cats/.DS_Store").write_bytes(b"finder")
    kit.write_tree(src / ".cache", {"x/y.jpg": b"hidden class"})
    (src / "dogs/d1.jpg").chmod(0o444)
    fetch("../src")  # relative to the working folder
    out = clean_env / "data/raw"
    copied = kit.read_tree(out)
    listed = json.loads(copied.pop(SKIPPED_LIST))["skipped"]
    assert copied == FILES_A
    assert listed == [{"path": ".cache", "reason": "hidden"},
                      {"path": "cats/.DS_Store", "reason": "hidden"}]
    assert kit.read_tree(src)["cats/a1.jpg"] == b"cat one"  # the source is untouched
    assert (out / "dogs/d1.jpg").stat().st_mode & stat.S_IWUSR  # copies are plain files
    assert leftovers(clean_env / "data") == []


def test_missing_local_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nowhere/data does not exist"):
        fetch(str(tmp_path / "nowhere/data"))


def test_folder_without_class_folders(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match=f"{flat}: no class sub-folders"):
        fetch(str(flat))
    assert not Path("data/raw").exists()


def test_file_url_zip_with_one_top_folder(tmp_path: Path, kit, clean_env: Path) -> None:
    archive = kit.make_zip(tmp_path / "animals.zip", FILES_A, prefix="Animals/")
    with zipfile.ZipFile(archive, "a") as zf:  # what macOS adds to zips
        zf.writestr("__MACOSX/Animals/._x", b"meta")
    fetch(archive.as_uri())
    assert kit.read_tree(clean_env / "data/raw") == FILES_A
    assert leftovers(clean_env / "data") == []


def test_file_url_tar_gz_nested_twice(tmp_path: Path, kit, clean_env: Path) -> None:
    archive = kit.make_tar(tmp_path / "d.tar.gz", FILES_A, prefix="./dataset/v1/")
    fetch(archive.as_uri(), out="raw")
    assert kit.read_tree(clean_env / "raw") == FILES_A


def test_local_archive_path(tmp_path: Path, kit, clean_env: Path) -> None:
    archive = kit.make_tar(tmp_path / "d.tar.xz", FILES_A, mode="w:xz")
    fetch(str(archive))
    assert kit.read_tree(clean_env / "data/raw") == FILES_A


def test_unsafe_archive_writes_nothing(tmp_path: Path, kit, clean_env: Path) -> None:
    archive = kit.make_zip(tmp_path / "evil.zip", {**FILES_A, "../evil": b"pwned"})
    with pytest.raises(UserError, match=r"'\.\./evil' has a '\.\.' component"):
        fetch(archive.as_uri())
    assert not (clean_env / "data/raw").exists()
    assert not (clean_env / "data/evil").exists() and not (clean_env / "evil").exists()
    assert leftovers(clean_env / "data") == []


# --- atomic replacement -------------------------------------------------------------------


def test_output_is_replaced_whole_and_kept_on_failure(tmp_path: Path, kit,
                                                      clean_env: Path) -> None:
    kit.write_tree(tmp_path / "a", FILES_A)
    files_b = {"birds/b.jpg": b"bird", "snakes/s.jpg": b"snake"}
    archive_b = kit.make_zip(tmp_path / "b.zip", files_b, prefix="B/")
    out = clean_env / "data/raw"
    fetch(str(tmp_path / "a"))
    fetch(archive_b.as_uri())
    assert kit.read_tree(out) == files_b  # nothing of the first dataset is left
    with pytest.raises(UserError):
        fetch(str(tmp_path / "missing"))
    with pytest.raises(UserError):
        fetch(f"{CLOSED_PORT}/x.zip")
    assert kit.read_tree(out) == files_b
    assert leftovers(clean_env / "data") == []


# --- HTTP ---------------------------------------------------------------------------------


def test_http_archive(server, kit, clean_env: Path) -> None:
    server.routes["/files/d"] = (200, zip_bytes(FILES_A, prefix="top/"), {})
    fetch(f"{server.base}/files/d")
    assert kit.read_tree(clean_env / "data/raw") == FILES_A
    _, headers = server.requests[0]
    assert headers["User-Agent"].startswith("imgclf/") and "Authorization" not in headers


def test_http_404(server, clean_env: Path) -> None:
    with pytest.raises(UserError, match=r"/nothing\.zip not found \(HTTP 404"):
        fetch(f"{server.base}/nothing.zip")
    assert not (clean_env / "data/raw").exists()
    assert leftovers(clean_env / "data") == []


def test_http_cut_off(server) -> None:
    server.routes["/d.zip"] = (200, b"PK\x03\x04abc", {"Content-Length": "5000"})
    with pytest.raises(UserError, match="was cut off"):
        fetch(f"{server.base}/d.zip")


def test_http_page_instead_of_archive(server) -> None:
    server.routes["/d.zip"] = (200, b"<!DOCTYPE html><html>sign in</html>", {})
    with pytest.raises(UserError, match="HTML page"):
        fetch(f"{server.base}/d.zip")


def test_unreachable_url(clean_env: Path) -> None:
    with pytest.raises(UserError, match=r"cannot reach 127\.0\.0\.1:1 \(.+\); download the"):
        fetch(f"{CLOSED_PORT}/x.zip")
    assert not (clean_env / "data/raw").exists()


def test_unreachable_kaggle_for_known_dataset_suggests_the_mirror(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLF_KAGGLE_URL", CLOSED_PORT)
    with pytest.raises(UserError, match=r"cannot reach 127\.0\.0\.1:1 \(.+\); set "
                                        "IMGCLF_DATA_MIRROR to a local copy"):
        fetch(DEFAULT_SOURCE)


# --- timeouts -----------------------------------------------------------------------------


@pytest.fixture
def stalling_server() -> Iterator[Callable[[bytes], str]]:
    """A TCP server on 127.0.0.1 that sends ``greeting`` on each connection, then nothing.

    The connections are held open (never closed) until the test ends, so the client
    sees a live but silent peer: only its own timeout can end the wait.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()
    greeting = [b""]

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            if greeting[0]:
                conn.sendall(greeting[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def start(first_bytes: bytes) -> str:
        greeting[0] = first_bytes
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def fetch_timed(url: str, **kwargs) -> tuple[str, float]:
    """The UserError message of fetching ``url`` and the seconds it took."""
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        fetch(url, **kwargs)
    return str(info.value), time.monotonic() - start


# The headers promise 100,000 bytes; 1,000 arrive, then the server goes quiet.
HALF_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"PK" * 500


@pytest.mark.parametrize(("greeting", "when"), [
    (b"", "waiting for an answer"),
    (HALF_ANSWER, "with 1000 of 100000 bytes received"),
])
def test_silent_server_times_out_and_leaves_nothing(
        stalling_server, greeting: bytes, when: str, clean_env: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = stalling_server(greeting) + "/d.zip"
    monkeypatch.setenv("IMGCLF_HTTP_TIMEOUT", "1.5")
    message, seconds = fetch_timed(url)
    assert 1.5 <= seconds < 1.5 + 5
    assert message.startswith(f"download from 127.0.0.1:{url.split(':')[2].split('/')[0]} "
                              f"timed out after 1.5 s {when}; ")
    assert "IMGCLF_HTTP_TIMEOUT=SECONDS" in message and "--timeout SECONDS" in message
    assert "point data.source at the file or a local folder" in message
    assert "\n" not in message
    assert not (clean_env / "data/raw").exists()
    assert leftovers(clean_env / "data") == []


def test_timeout_keeps_the_previous_output(stalling_server, tmp_path: Path, kit,
                                           clean_env: Path) -> None:
    kit.write_tree(tmp_path / "a", FILES_A)
    fetch(str(tmp_path / "a"))
    message, seconds = fetch_timed(stalling_server(HALF_ANSWER) + "/d.zip", timeout=0.5)
    assert "timed out after 0.5 s" in message and seconds < 0.5 + 5
    assert kit.read_tree(clean_env / "data/raw") == FILES_A
    assert leftovers(clean_env / "data") == []


def test_known_dataset_timeout_suggests_the_mirror(stalling_server,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLF_KAGGLE_URL", stalling_server(b""))
    message, _ = fetch_timed(DEFAULT_SOURCE, timeout=0.5)
    assert "timed out after 0.5 s waiting for an answer" in message
    assert message.endswith("or set IMGCLF_DATA_MIRROR to a local copy of the dataset or "
                            "point data.source at a local folder")


def test_cli_timeout_flag_wins_over_the_environment(
        stalling_server, clean_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = stalling_server(b"") + "/d.zip"
    (clean_env / "params.yaml").write_text(f"data:\n  source: {url}\n")
    monkeypatch.setenv("IMGCLF_HTTP_TIMEOUT", "300")  # were it used, the test would hang
    start = time.monotonic()
    assert cli.main(["download", "--timeout", "0.5"]) == 2
    assert time.monotonic() - start < 0.5 + 5
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "timed out after 0.5 s" in err[0]
    assert not (clean_env / "data/raw").exists()


def test_fetch_url_reads_the_setting_itself(stalling_server, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The pretrained stage calls fetch_url without a timeout: the variable must apply."""
    monkeypatch.setenv("IMGCLF_HTTP_TIMEOUT", "0.5")
    start = time.monotonic()
    with pytest.raises(UserError, match=r"timed out after 0\.5 s .+, or put the file there$"):
        fetch_url(stalling_server(b"") + "/w.h5", tmp_path / "w.h5", "put the file there")
    assert time.monotonic() - start < 0.5 + 5


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", "1e400"])
def test_bad_timeout_setting_is_named(value: str, server, clean_env: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLF_HTTP_TIMEOUT", value)
    server.routes["/d.zip"] = (200, zip_bytes(FILES_A), {})
    with pytest.raises(UserError, match=rf"^IMGCLF_HTTP_TIMEOUT={value}: not a timeout; unset it "
                                        r"for the default 60, or set a number of seconds above 0"):
        fetch(f"{server.base}/d.zip")
    assert server.requests == []  # refused before any request
    assert not (clean_env / "data/raw").exists()


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_bad_timeout_flag_is_named(value: str, clean_env: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    (clean_env / "params.yaml").write_text(f"data:\n  source: {CLOSED_PORT}/d.zip\n")
    assert cli.main(["download", "--timeout", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imgclf download: error: --timeout ") and "not a timeout" in err


def test_timeout_setting_applies_to_local_sources_too(tmp_path: Path, kit,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad setting is reported even when this source would not use it: it is a typo."""
    kit.write_tree(tmp_path / "a", FILES_A)
    monkeypatch.setenv("IMGCLF_HTTP_TIMEOUT", "soon")
    with pytest.raises(UserError, match="IMGCLF_HTTP_TIMEOUT=soon"):
        fetch(str(tmp_path / "a"))
    monkeypatch.setenv("IMGCLF_HTTP_TIMEOUT", " ")  # blank means unset
    fetch(str(tmp_path / "a"))
    monkeypatch.setenv("IMGCLF_HTTP_TIMEOUT", "2.5")
    assert http_timeout() == 2.5
    assert http_timeout(7) == 7.0  # the flag wins


# --- Kaggle -------------------------------------------------------------------------------


def test_kaggle_403_without_credentials(server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLF_KAGGLE_URL", f"{server.base}/api/")
    server.routes["/api/owner/name"] = (403, b"forbidden", {})
    with pytest.raises(UserError, match="set KAGGLE_USERNAME and KAGGLE_KEY"):
        fetch("kaggle:owner/name")
    assert [p for p, _ in server.requests] == ["/api/owner/name"]
    assert "Authorization" not in server.requests[0][1]


def test_kaggle_credentials_sent_but_never_printed(server, clean_env: Path, capsys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLF_KAGGLE_URL", f"{server.base}/api")
    (clean_env / ".env").write_text("# kaggle\nKAGGLE_USERNAME=alice\nKAGGLE_KEY='t0p-s3cret'\n")
    monkeypatch.setenv("KAGGLE_USERNAME", "bob")  # the environment wins over .env
    server.routes["/api/owner/name"] = (401, b"unauthorized", {})
    with pytest.raises(UserError, match="refused the credentials") as info:
        fetch("kaggle:owner/name")
    auth = server.requests[0][1]["Authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")) == b"bob:t0p-s3cret"
    captured = capsys.readouterr()
    assert "t0p-s3cret" not in str(info.value) + captured.out + captured.err


def test_kaggle_half_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "bob")
    with pytest.raises(UserError, match="KAGGLE_KEY is not set"):
        fetch("kaggle:owner/name")


def test_known_kaggle_dataset_over_http_is_verified(server, kit, pinned, clean_env: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    files, registry = pinned
    monkeypatch.setenv("IMGCLF_KAGGLE_URL", f"{server.base}/api")
    monkeypatch.setenv("KAGGLE_USERNAME", "bob")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    body = zip_bytes({**files, "cats/not-pinned.jpg": b"x"}, prefix="Animals/")
    # Kaggle answers with a redirect to signed storage, which must not get the key.
    server.routes["/api/Owner/Name"] = (302, b"", {"Location": "/storage/blob"})
    server.routes["/storage/blob"] = (200, body, {})
    fetch("kaggle:Owner/Name", known=registry("kaggle:owner/name"))
    assert kit.read_tree(clean_env / "data/raw") == files  # the unpinned file is left out
    (_, first), (_, second) = server.requests
    assert "Authorization" in first and "Authorization" not in second


def test_known_dataset_from_network_must_match(server, kit, pinned,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    files, registry = pinned
    monkeypatch.setenv("IMGCLF_KAGGLE_URL", server.base)
    server.routes["/o/n"] = (200, zip_bytes({**files, "dogs/dogs_001.jpg": b"other"}), {})
    with pytest.raises(UserError, match=r"1 file.+differ.+dogs/dogs_001\.jpg.+upstream"):
        fetch("kaggle:o/n", known=registry("kaggle:o/n"))
    assert not Path("data/raw").exists()


# --- the mirror ---------------------------------------------------------------------------


def test_mirror_is_used_and_verified(mirror: Path, pinned, kit, clean_env: Path) -> None:
    files, registry = pinned
    fetch(DEFAULT_SOURCE, known=registry())
    assert kit.read_tree(clean_env / "data/raw") == files  # no SHA256SUMS, SOURCE.md, extras
    assert kit.read_tree(mirror)["cats/not-pinned.jpg"] == b"extra"


def test_mirror_mismatch_names_files_and_keeps_output(mirror: Path, pinned, kit,
                                                      clean_env: Path) -> None:
    files, registry = pinned
    fetch(DEFAULT_SOURCE, known=registry())
    (mirror / "cats/cats_001.jpg").write_bytes(b"tampered")
    (mirror / "snakes/snakes_000.jpg").unlink()
    with pytest.raises(UserError) as info:
        fetch(DEFAULT_SOURCE, known=registry())
    message = str(info.value)
    assert "1 file(s) differ from the pinned checksum: cats/cats_001.jpg" in message
    assert "1 file(s) are missing: snakes/snakes_000.jpg" in message
    assert "IMGCLF_DATA_MIRROR" in message
    assert kit.read_tree(clean_env / "data/raw") == files
    assert leftovers(clean_env / "data") == []


def test_mirror_that_is_not_a_folder(tmp_path: Path, pinned,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, registry = pinned
    monkeypatch.setenv("IMGCLF_DATA_MIRROR", str(tmp_path / "no-such-dir"))
    with pytest.raises(UserError, match=r"IMGCLF_DATA_MIRROR=.*no-such-dir: not a folder"):
        fetch(DEFAULT_SOURCE, known=registry())


def test_mirror_is_ignored_for_other_sources(tmp_path: Path, kit, clean_env: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLF_DATA_MIRROR", str(tmp_path / "no-such-dir"))
    kit.write_tree(tmp_path / "mine", FILES_A)
    fetch(str(tmp_path / "mine"))
    assert kit.read_tree(clean_env / "data/raw") == FILES_A


def test_default_registry_pins_the_animals_manifest(mirror: Path) -> None:
    assert DEFAULT_SOURCE in download.KNOWN_DATASETS
    # The fake mirror holds none of the 3,000 pinned files, so all are reported missing.
    with pytest.raises(UserError, match=r"3000 file\(s\) are missing: cats/0_0001\.jpg.+"
                                        "and 2995 more"):
        fetch(DEFAULT_SOURCE)


@pytest.mark.realdata
def test_real_mirror(monkeypatch: pytest.MonkeyPatch, real_photos: Path, clean_env: Path) -> None:
    monkeypatch.setenv("IMGCLF_DATA_MIRROR", str(real_photos))
    start = time.monotonic()
    fetch(DEFAULT_SOURCE)
    out = clean_env / "data/raw"
    counts = {d.name: len(list(d.iterdir())) for d in out.iterdir()}
    assert counts == {"cats": 1000, "dogs": 1000, "snakes": 1000}
    assert time.monotonic() - start < 60
