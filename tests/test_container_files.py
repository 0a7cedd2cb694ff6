"""The files around the code: lock file, Dockerfile, .dockerignore, compose, workflows.

Linted with the real tools (hadolint and actionlint, installed from the dev extras) and
read for what they must hold. .dockerignore is applied by Docker's own client (the
docker CLI, talking to a stand-in for the engine on a Unix socket). Building the image
is `make container-check`'s job: it needs podman, these tests do not.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socketserver
import subprocess
import sys
import tarfile
import threading
import tomllib
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from imgclf import pr_report

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github/workflows").glob("*.yml"))


def tool(name: str) -> str:
    """A dev tool of the venv running the tests (else from PATH)."""
    found = Path(sys.executable).parent / name
    path = str(found) if found.exists() else shutil.which(name)
    assert path, f"{name} is missing: run `make setup` (it comes with the dev extras)"
    return path


# --- the lock file -----------------------------------------------------------------------

LOCKS = ("requirements.lock", "requirements-dev.lock")


def lock_pins(lock: str = "requirements.lock") -> dict[str, str]:
    pins = {}
    for line in (REPO / lock).read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not pinned exactly: {line}"
        assert not req.url and not req.extras and not req.marker, f"not a plain pin: {line}"
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def declared(lock: str) -> list[Requirement]:
    """The requirements each lock pins: the project's own, or the dev tools'."""
    if lock == "requirements.lock":
        project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        return [Requirement(r) for r in project["dependencies"]]
    lines = [line.split("#", 1)[0].strip()
             for line in (REPO / "requirements-dev.in").read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_pins_every_declared_dependency_within_its_range(lock: str) -> None:
    pins = lock_pins(lock)
    for req in declared(lock):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in {lock}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {req.name}=={pins[name]}, outside {req}: run `make lock`")


def test_the_dev_lock_keeps_the_runtime_pins_and_holds_no_runtime_library() -> None:
    """A dev tool never moves a runtime pin, so bumping one reruns no stage."""
    runtime, dev = lock_pins(), lock_pins("requirements-dev.lock")
    for name in dev.keys() & runtime.keys():
        assert dev[name] == runtime[name], name
    for name in ("tensorflow", "keras", "pillow", "numpy", "scikit-learn"):
        assert name in runtime and name not in dev, name
    assert "pytest" in dev and "pytest" not in runtime


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_holds_no_local_paths_or_index_options(lock: str) -> None:
    lines = (REPO / lock).read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    for bad in ("file:", "/opt/", "--find-links", "--index-url", "--extra-index-url",
                "--trusted-host", "-e ", "-c ", "/work/"):
        assert bad not in text, f"{lock} holds {bad!r}: it must work anywhere"
    assert len(lock_pins(lock)) > 30  # the whole tree, not only the direct dependencies


def test_setup_installs_from_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --quiet -r requirements.lock -r requirements-dev.lock" in makefile
    assert "--no-deps" in makefile and "pip-compile" in makefile


# --- Dockerfile --------------------------------------------------------------------------

def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run([tool("hadolint"), "Dockerfile"], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_installs_the_lock_before_the_code() -> None:
    ins = instructions()
    steps = [f"{word} {args}" for word, args in ins]

    def first(pattern: str) -> int:
        return next(i for i, s in enumerate(steps) if re.search(pattern, s))

    assert first(r"^COPY requirements\.lock ") < first(r"pip install -r requirements\.lock")
    assert first(r"pip install -r requirements\.lock") < first(r"^COPY .*\s\.\s+\.$")
    assert "ARG BASE_IMAGE=python:3.11-slim" in steps
    assert steps[first(r"^FROM ")] == "FROM ${BASE_IMAGE}"
    assert re.search(r"apt-get install -y --no-install-recommends git", steps[first("apt-get")])


def test_dockerfile_runs_dvc_repro_as_a_user_and_takes_any_command() -> None:
    ins = instructions()
    users = [args for word, args in ins if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [args for word, args in ins if word == "CMD"] == ['["dvc", "repro"]']
    assert not [word for word, _ in ins if word == "ENTRYPOINT"]  # `imgclf ...` runs as is
    assert any(word == "ARG" and args.startswith("TF_EXTRA") for word, args in ins)
    git_init = next(args for word, args in ins if word == "RUN" and "git init" in args)
    assert "git commit" in git_init  # dvc needs a git repo; .git is not copied in


# --- .dockerignore -----------------------------------------------------------------------

class _FakeDaemon(BaseHTTPRequestHandler):
    """Just enough of the Docker Engine API for ``docker build``: it keeps the build
    context the client sends (a tar) and ends the build."""

    protocol_version = "HTTP/1.1"
    contexts: ClassVar[list[bytes]] = []

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def address_string(self) -> str:  # a Unix socket has no client address
        return "docker"

    def _reply(self, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(200)
        for name, value in (("Api-Version", "1.47"), ("Content-Type", ctype),
                            ("Content-Length", str(len(body)))):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = bytearray()
        while size := int(self.rfile.readline().split(b";")[0], 16):
            out += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return bytes(out)

    def do_HEAD(self) -> None:  # /_ping
        self._reply(b"OK")

    do_GET = do_HEAD

    def do_POST(self) -> None:  # /vX/build
        self.contexts.append(self._body())
        self._reply(b'{"error": "context received", "errorDetail": {"message": "ok"}}\n',
                    "application/json")


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def build_context(folder: Path, scratch: Path) -> set[str]:
    """The paths under ``folder`` that Docker's own client (the docker CLI's classic
    builder, with ``folder``'s .dockerignore) sends as the build context."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("needs the docker CLI (the client alone: no engine) to compute the "
                    "build context with Docker's own .dockerignore rules")
    socket = scratch / "docker.sock"
    server = _UnixServer(str(socket), _FakeDaemon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeDaemon.contexts.clear()
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket}", "DOCKER_BUILDKIT": "0",
           "DOCKER_CONFIG": str(scratch / "config")}
    try:
        proc = subprocess.run([docker, "build", "-q", "."], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert len(_FakeDaemon.contexts) == 1, proc.stdout + proc.stderr
    with tarfile.open(fileobj=io.BytesIO(_FakeDaemon.contexts[0])) as tar:
        return set(tar.getnames())


KEPT_OUT = [
    ".env", ".env.local", ".venv/bin/python", ".git/HEAD", "data/raw/cats/1.jpg",
    "data/prepared/shard-0.bin", "models/model.keras", ".dvc/cache/files/md5/ab/cdef",
    ".dvc/tmp/lock", ".dvc/config.local", "wandb/run-1/x",
    "src/imgclf/__pycache__/cli.cpython-311.pyc", "tests/__pycache__/x.pyc",
]
KEPT_IN = [
    "src/imgclf/cli.py", "src/imgclf/data/download.py", "src/imgclf/pr_report/__init__.py",
    "requirements.lock", "pyproject.toml", "dvc.yaml", "dvc.lock", "params.yaml",
    ".dvc/config", "metrics/eval.json", ".gitignore", ".env.example", "README.md",
]


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The build context Docker makes of a folder holding this repo's Dockerfile and
    .dockerignore and an empty file at each path of KEPT_OUT and KEPT_IN."""
    folder = tmp_path_factory.mktemp("context")
    for name in ("Dockerfile", ".dockerignore"):
        shutil.copy(REPO / name, folder / name)
    for path in KEPT_OUT + KEPT_IN:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).touch()
    return build_context(folder, tmp_path_factory.mktemp("docker"))


def test_docker_sends_a_context(context: set[str]) -> None:
    assert {"Dockerfile", ".dockerignore", "src/imgclf/cli.py"} <= context


@pytest.mark.parametrize("path", KEPT_OUT)
def test_dockerignore_keeps_out(context: set[str], path: str) -> None:
    assert path not in context


@pytest.mark.parametrize("path", KEPT_IN)
def test_dockerignore_keeps_in(context: set[str], path: str) -> None:
    assert path in context


# --- docker-compose.yml and .env.example -------------------------------------------------

def env_example() -> set[str]:
    text = (REPO / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_compose_app_reads_env_and_keeps_results_on_the_host() -> None:
    app = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["app"]
    env_files = [e["path"] if isinstance(e, dict) else e for e in app["env_file"]]
    assert ".env" in env_files
    mounts = {re.sub(r"\$\{[^}]*\}", "X", v).split(":")[1]: v for v in app["volumes"]}
    for target in ("/app/data", "/app/models", "/app/metrics", "/app/.dvc/cache",
                   "/app/params.yaml", "/app/dvc.lock"):
        assert target in mounts, f"{target} is not mounted"
    mirror = app["environment"]["IMGCLF_DATA_MIRROR"]
    assert mirror == "${IMGCLF_DATA_MIRROR:+/mirror}"
    assert mounts["/mirror"].startswith("${IMGCLF_DATA_MIRROR") and mounts["/mirror"].endswith(
        ":ro")


def test_compose_publishes_the_serve_port_on_loopback_only() -> None:
    app = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["app"]
    (port,) = app["ports"]
    host_ip, host_port, container_port = re.fullmatch(r"([\d.]+):(\$\{[^}]+\}):(\d+)",
                                                      port).groups()
    assert host_ip == "127.0.0.1"  # the host side: not reachable from other machines
    assert host_port == "${IMGCLF_SERVE_PORT:-8000}"
    assert container_port == "8000"  # imgclf serve's default --port
    assert "EXPOSE 8000" in (REPO / "Dockerfile").read_text()


def test_every_compose_variable_is_in_env_example() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    app = yaml.safe_load(text)["services"]["app"]
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)) | set(app["environment"])
    used |= {"WANDB_API_KEY", "WANDB_MODE", "KAGGLE_USERNAME", "KAGGLE_KEY"}  # via .env
    missing = used - env_example()
    assert not missing, f"not in .env.example: {sorted(missing)}"


def test_env_example_sets_no_secret() -> None:
    for line in (REPO / ".env.example").read_text().splitlines():
        m = re.match(r"\s*([A-Z_]+)=(.*)", line)  # uncommented lines only
        if m:
            assert not m[2] or m[1] not in {"WANDB_API_KEY", "KAGGLE_KEY"}


# --- workflows ---------------------------------------------------------------------------

def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    proc = subprocess.run([tool("actionlint"), *map(str, WORKFLOWS)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def workflow(name: str) -> dict:
    wf = yaml.safe_load((REPO / ".github/workflows" / name).read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as true
    return wf


def steps(wf: dict) -> list[dict]:
    return [s for job in wf["jobs"].values() for s in job["steps"]]


def test_pr_workflow_reproduces_and_comments_once() -> None:
    wf = workflow("pr.yml")
    assert "pull_request" in wf["on"]
    all_steps = steps(wf)
    runs = "\n".join(s.get("run", "") for s in all_steps)
    assert "make setup" in runs and "make repro" in runs and "imgclf report" in runs
    cache = next(s for s in all_steps if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"] == ".dvc/cache"
    script = next(s for s in all_steps if s.get("uses", "").startswith("actions/github-script@"))
    body = script["with"]["script"]
    assert pr_report.MARKER in body and "updateComment" in body and "createComment" in body


def test_main_workflow_runs_make_test_on_pushes_to_main() -> None:
    wf = workflow("main.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    assert "make test" in "\n".join(s.get("run", "") for s in steps(wf))


def test_container_check_script_is_executable_shell() -> None:
    script = REPO / "scripts/container-check.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
