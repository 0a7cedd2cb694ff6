"""The settings of ``imgclf serve``: each one's default, range and meaning, once.

The CLI shows the defaults and meanings in ``--help`` and the server runs with them. A
setting comes from its command-line option, else from the environment variable
``IMGCLF_SERVE_<NAME>`` (``IMGCLF_SERVE_MAX_FILES=8``), else from its default here; the
token comes only from ``IMGCLF_SERVE_TOKEN``. This module imports only pydantic: the CLI
must not import the server (or NumPy, Pillow and FastAPI) to build its parser, since
every pipeline stage builds the same parser.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from imgclf.errors import UserError
from imgclf.inference.options import TOP_K

ENV_PREFIX = "IMGCLF_SERVE_"
TOKEN_ENV = f"{ENV_PREFIX}TOKEN"
HOST = "127.0.0.1"  # loopback: only this machine, unless --host says otherwise
# Where to listen is the command line's alone: in docker compose IMGCLF_SERVE_PORT is the
# host's side of the published port (the container's side is always 8000).
COMMAND_LINE_ONLY = frozenset({"host", "port"})


class ServeSettings(BaseSettings):
    """How ``imgclf serve`` listens and answers, beside the model and report it serves."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True,
                                      frozen=True, extra="forbid")

    host: str = Field(HOST, description="the address to listen on; 0.0.0.0 for every "
                      "interface")
    port: int = Field(8000, ge=0, le=65535, description="the port; 0 for any free one")
    top_k: int = Field(TOP_K, ge=1, description="classes per image unless a request asks "
                       "(?top_k=N)")
    max_upload_mb: float = Field(16.0, gt=0, allow_inf_nan=False,
                                 description="largest request body; a larger one gets 413")
    max_files: int = Field(64, ge=1, description="most images per request")
    batch_images: int = Field(32, ge=1, description="most images of concurrent requests "
                              "in one model call")
    batch_window_ms: float = Field(5.0, ge=0, allow_inf_nan=False,
                                   description="how long a batch waits for requests "
                                   "already being received")
    decode_threads: int = Field(2, ge=1, description="images decoded at once; a large "
                                "image can take a gigabyte while it is decoded")
    max_queue: int = Field(64, ge=1, description="most /predict requests being decoded or "
                           "waiting for the model; more get 503 with Retry-After")
    max_connections: int = Field(256, ge=1, description="most open connections; more get "
                                 "503")
    header_timeout_s: float = Field(10.0, gt=0, allow_inf_nan=False,
                                    description="time to send a request's headers")
    body_timeout_s: float = Field(60.0, gt=0, allow_inf_nan=False,
                                  description="time to send a request's body; a slower "
                                  "one gets 408")
    keep_alive_s: float = Field(5.0, gt=0, allow_inf_nan=False,
                                description="how long an idle connection stays open")
    shutdown_grace_s: float = Field(8.0, ge=0, allow_inf_nan=False,
                                    description="how long requests in flight may finish "
                                    "after SIGTERM; those left get 503")
    # Required as a bearer token when set; SecretStr keeps it out of reprs and logs.
    token: SecretStr | None = Field(None, description=f"${TOKEN_ENV}: the bearer token "
                                    "every request needs but those docs/serve.md names")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def batch_window_s(self) -> float:
        return self.batch_window_ms / 1000

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   env_settings: Any, dotenv_settings: Any,
                                   file_secret_settings: Any) -> tuple[Any, ...]:
        # The options given, then the environment (less what only the command line
        # sets); no .env or secrets files (imgclf.env handles .env files).
        return init_settings, _Environment(settings_cls)

    @classmethod
    def load(cls, **options: Any) -> ServeSettings:
        """The settings from ``options`` (the command line's, by field name) and the
        environment; UserError with one line naming each bad option or variable."""
        try:
            return cls(**options)
        except ValidationError as exc:
            raise UserError("; ".join(_explain(e, options) for e in exc.errors())) from None


DEFAULTS = ServeSettings.model_construct()  # for help texts: reads no environment


class _Environment(EnvSettingsSource):
    """The ``IMGCLF_SERVE_*`` variables, less the settings only the command line sets."""

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__call__().items() if k not in COMMAND_LINE_ONLY}


def option(name: str) -> str:
    """The command-line option of setting ``name``: ``max_files`` -> ``--max-files``."""
    return "--" + name.replace("_", "-")


def _explain(error: Any, options: dict[str, Any]) -> str:
    """``--max-files 0: must be at least 1`` or ``IMGCLF_SERVE_MAX_FILES=0: ...``."""
    name = str(error["loc"][0]) if error["loc"] else "?"
    bound = {k: f"{v:g}" for k, v in (error.get("ctx") or {}).items()
             if isinstance(v, int | float)}
    why = {"greater_than_equal": f"must be at least {bound.get('ge')}",
           "greater_than": f"must be more than {bound.get('gt')}",
           "less_than_equal": f"must be at most {bound.get('le')}",
           }.get(error["type"], error["msg"][:1].lower() + error["msg"][1:])
    if name in options:
        return f"{option(name)} {options[name]}: {why}"
    value = "" if name == "token" else error["input"]  # the token is never printed
    return f"{ENV_PREFIX}{name.upper()}={value}: {why}; change or unset it"
