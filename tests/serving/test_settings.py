"""The settings of ``imgclf serve``: the command line, then ``IMGCLF_SERVE_*``, then the
defaults that ``--help`` shows; a bad value is one line naming the option or variable."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from imgclf import cli
from imgclf.errors import UserError
from imgclf.serving.settings import ServeSettings, option


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in os.environ:
        if name.upper().startswith("IMGCLF_SERVE_"):
            monkeypatch.delenv(name)
    yield


def serve_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    return " ".join(capsys.readouterr().out.split())  # unwrapped


def test_help_shows_the_defaults_the_server_runs_with(
        capsys: pytest.CaptureFixture[str]) -> None:
    options = serve_help(capsys).partition(" options: ")[2]
    helps = {chunk.split()[0]: chunk for chunk in re.split(r" (?=--[a-z])", options)}
    running = ServeSettings.load()
    for name in ServeSettings.model_fields.keys() - {"token"}:
        shown = re.findall(r"\(default: (\S+)\)$", helps[option(name)])
        assert shown == [str(getattr(running, name))], name


def test_the_command_line_wins_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = ServeSettings.load()
    monkeypatch.setenv("IMGCLF_SERVE_MAX_FILES", "8")
    monkeypatch.setenv("IMGCLF_SERVE_TOP_K", "5")
    monkeypatch.setenv("imgclf_serve_batch_window_ms", "2.5")  # any case, as in the docs
    monkeypatch.setenv("IMGCLF_SERVE_BATCH_IMAGES", "")  # empty: unset
    settings = ServeSettings.load(top_k=2)
    assert (settings.max_files, settings.top_k, settings.batch_window_ms) == (8, 2, 2.5)
    assert settings.batch_window_s == 0.0025
    assert settings.batch_images == defaults.batch_images


def test_where_to_listen_is_never_read_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # docker compose's IMGCLF_SERVE_PORT is the host's side of the published port.
    defaults = ServeSettings.load()
    monkeypatch.setenv("IMGCLF_SERVE_PORT", "9000")
    monkeypatch.setenv("IMGCLF_SERVE_HOST", "0.0.0.0")
    settings = ServeSettings.load()
    assert (settings.host, settings.port) == (defaults.host, defaults.port)
    assert ServeSettings.load(port=9001).port == 9001


def test_the_token_comes_from_the_environment_and_stays_out_of_reprs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServeSettings.load().token is None
    monkeypatch.setenv("IMGCLF_SERVE_TOKEN", "s3cret-4f9a")
    settings = ServeSettings.load()
    assert settings.token is not None and settings.token.get_secret_value() == "s3cret-4f9a"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    monkeypatch.setenv("IMGCLF_SERVE_TOKEN", "")
    assert ServeSettings.load().token is None


def test_settings_are_frozen_and_unknown_ones_refused() -> None:
    settings = ServeSettings.load()
    with pytest.raises(ValidationError, match="frozen"):
        settings.max_files = 3  # type: ignore[misc]
    with pytest.raises(UserError, match="--max-file 3: extra inputs are not permitted"):
        ServeSettings.load(max_file=3)


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--max-files", "0"], {}, "--max-files 0: must be at least 1"),
    (["--port", "70000"], {}, "--port 70000: must be at most 65535"),
    (["--max-upload-mb", "0"], {}, "--max-upload-mb 0.0: must be more than 0"),
    (["--max-upload-mb", "inf"], {}, "--max-upload-mb inf: input should be a finite number"),
    ([], {"IMGCLF_SERVE_BATCH_WINDOW_MS": "-1"},
     "IMGCLF_SERVE_BATCH_WINDOW_MS=-1: must be at least 0; change or unset it"),
    ([], {"IMGCLF_SERVE_TOP_K": "three"},
     "IMGCLF_SERVE_TOP_K=three: input should be a valid integer, unable to parse string as "
     "an integer; change or unset it"),
    (["--top-k", "0", "--batch-images", "0"], {},
     "--top-k 0: must be at least 1; --batch-images 0: must be at least 1"),
])
def test_bad_values_stop_serve_with_one_line_before_the_model_loads(
        args: list[str], env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # A model that does not exist: the settings are checked first.
    assert cli.main(["serve", "--model", "nowhere.keras", *args]) == 2
    assert capsys.readouterr().err == f"imgclf serve: error: {message}\n"
