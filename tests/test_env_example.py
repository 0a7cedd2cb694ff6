""".env.example names every variable a user may set: each ``IMGCLF_*`` variable the
code reads, and each serve setting that the environment can give."""

from __future__ import annotations

import re
from pathlib import Path

from imgclf.serving.settings import COMMAND_LINE_ONLY, ENV_PREFIX, ServeSettings

REPO = Path(__file__).resolve().parent.parent
# Read by the code but not for users: the test suite's stand-in for Kaggle's API.
FOR_TESTS = {"IMGCLF_KAGGLE_URL"}


def listed() -> set[str]:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_every_serve_setting_of_the_environment_is_listed() -> None:
    wanted = {ENV_PREFIX + name.upper() for name in ServeSettings.model_fields
              if name not in COMMAND_LINE_ONLY}
    assert wanted - listed() == set()


def test_every_imgclf_variable_of_the_code_is_listed() -> None:
    named = {m for path in (REPO / "src" / "imgclf").rglob("*.py")
             for m in re.findall(r"[\"'](IMGCLF_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text())}
    assert "IMGCLF_MAX_IMAGE_MB" in named  # the search finds the constants
    assert named - FOR_TESTS - listed() == set()
