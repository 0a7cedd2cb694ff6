"""Parsing ``data.source`` and ``.env`` files (pure functions, no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgclf.data.sources import (
    KaggleSource,
    LocalSource,
    UrlSource,
    parse_source,
)
from imgclf.errors import UserError
from imgclf.params import DEFAULT_SOURCE


def test_default_source_is_a_kaggle_handle() -> None:
    source = parse_source(DEFAULT_SOURCE)
    assert source == KaggleSource("borhanitrash", "animal-image-classification-dataset")
    assert source.key == DEFAULT_SOURCE


def test_kaggle_key_is_case_insensitive() -> None:
    assert parse_source("Kaggle:Owner/Some.Data_set-1").key == "kaggle:owner/some.data_set-1"


@pytest.mark.parametrize("text", ["kaggle:", "kaggle:owner", "kaggle:a/b/c", "kaggle:/x",
                                  "kaggle:a b/c"])
def test_bad_kaggle_handle_says_the_form(text: str) -> None:
    with pytest.raises(UserError, match="kaggle:OWNER/NAME"):
        parse_source(text)


@pytest.mark.parametrize("url", ["https://example.org/d.zip", "http://127.0.0.1:8000/a.tar.gz"])
def test_web_urls(url: str) -> None:
    assert parse_source(url) == UrlSource(url)


def test_file_url_is_a_local_path() -> None:
    assert parse_source("file:///tmp/my%20data.zip") == LocalSource(Path("/tmp/my data.zip"))
    assert parse_source("file://localhost/srv/d.tar") == LocalSource(Path("/srv/d.tar"))


def test_plain_paths_are_local_and_kept_relative() -> None:
    assert parse_source("data/animals") == LocalSource(Path("data/animals"))
    assert parse_source("  /abs/folder ") == LocalSource(Path("/abs/folder"))


@pytest.mark.parametrize(("text", "match"), [
    ("", "empty"),
    ("ftp://host/d.zip", "ftp:// scheme is not supported"),
    ("s3://bucket/d.zip", "s3:// scheme is not supported"),
    ("file://server/share/d.zip", "remote host"),
    ("https:///d.zip", "no host"),
])
def test_unusable_sources(text: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        parse_source(text)
