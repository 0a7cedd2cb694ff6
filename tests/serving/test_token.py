"""``IMGCLF_SERVE_TOKEN``: every call but those docs/serve.md names needs it; it is never
logged, and never accepted in the URL."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

TOKEN = "s3cret-Tökén-4f9a"  # not ASCII: sent as its UTF-8 bytes
REPO = Path(__file__).resolve().parents[2]


def bearer(token: str = TOKEN) -> dict[str, bytes]:
    return {"Authorization": f"Bearer {token}".encode()}


@pytest.fixture(scope="module")
def guarded(tiny_model: Path, report_dir: Path, serve_helpers: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A second server, this one with a token (its log in a folder of its own)."""
    workdir = tmp_path_factory.mktemp("serve-token")
    report = ["--metrics", str(report_dir / "metrics" / "eval.json")]
    server = serve_helpers.start_server(tiny_model, workdir, *report,
                                        env={"IMGCLF_SERVE_TOKEN": TOKEN})
    yield server
    serve_helpers.stop_server(server)


def test_requests_without_the_right_token_get_401(guarded: Any,
                                                  photo: Callable[..., bytes]) -> None:
    files = [("files", ("red.png", photo("red")))]
    for headers in ({}, bearer("wrong"), bearer(TOKEN[:-1]), {"Authorization": TOKEN.encode()},
                    {"Authorization": f"Basic {TOKEN}".encode()}):
        answer = httpx.post(guarded.url + "predict", files=files, headers=headers)
        assert answer.status_code == 401, headers
        assert "Authorization: Bearer <token>" in answer.json()["detail"]
        assert answer.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in answer.text
    for path in ("info", "report", "report/confusion.png"):
        assert httpx.get(guarded.url + path).status_code == 401
    good = httpx.post(guarded.url + "predict", files=files, headers=bearer())
    assert good.status_code == 200 and good.json()[0]["predicted"] == "red"
    assert httpx.get(guarded.url + "info", headers=bearer()).status_code == 200


def test_exactly_the_paths_the_docs_name_answer_without_the_token(guarded: Any) -> None:
    text = (REPO / "docs" / "serve.md").read_text()
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("Open without the token:"))
    open_paths = re.findall(r"`(/[^`]*)`", line)
    assert "/healthz" in open_paths
    spec = httpx.get(guarded.url + "openapi.json").json()
    routes = {re.sub(r"\{name\}", "confusion.png", p) for p in spec["paths"]}
    for path in sorted(routes | set(open_paths)):
        path = path.replace("*", "app.js")
        status = (httpx.post if path in ("/predict", "/explain") else httpx.get)(
            guarded.url + path[1:])
        expected = 200 if path.replace("app.js", "*") in open_paths else 401
        assert status.status_code == expected, path


def test_a_token_in_the_url_is_refused_and_kept_out_of_the_log(guarded: Any) -> None:
    for query in ({"token": TOKEN}, {"access_token": "x"}, {"t": TOKEN}):
        answer = httpx.get(guarded.url + "info", params=query, headers=bearer())
        assert answer.status_code == 400, query
        assert "never in the URL" in answer.json()["detail"]
    log = guarded.output()
    assert "GET /info?token=***" in log and "access_token=***" in log
    assert TOKEN not in log and quote(TOKEN) not in log


def test_health_and_page_stay_open_and_the_token_is_never_logged(
        guarded: Any, photo: Callable[..., bytes]) -> None:
    assert httpx.get(guarded.url + "healthz").json()["token_required"] is True
    assert httpx.get(guarded.url).status_code == 200
    httpx.post(guarded.url + "predict", files=[("files", ("red.png", photo("red")))],
               headers=bearer()).raise_for_status()
    log = guarded.output()
    assert "bearer token required (IMGCLF_SERVE_TOKEN)" in log
    assert "POST /predict" in log  # requests are logged, their headers are not
    assert TOKEN not in log
