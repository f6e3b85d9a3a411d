"""Index credentials: generated per run for the local target, or read from the environment.

A password never travels in argv: processes get it through their environment (the proxy) or a
file (pypiserver's htpasswd). The dataclass hides the password from ``repr`` so that logging a
``Credentials`` by accident cannot leak it.
"""

from __future__ import annotations

import base64
import os
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pipstorm.infra.errors import InfraError

# How the proxy process receives upstream credentials: its environment, never its argv.
UPSTREAM_USERNAME_ENV: Final = "PIPSTORM_UPSTREAM_USERNAME"
UPSTREAM_PASSWORD_ENV: Final = "PIPSTORM_UPSTREAM_PASSWORD"  # noqa: S105 - a variable name


#: Variables that may hold a credential of the user's: read by the process that needs them,
#: never passed on to another (``without_secrets``). The proxy gets the index's credentials under
#: its own names above, and only those.
SECRET_ENV_VARS: Final = frozenset(
    {
        "PYPI_USERNAME",
        "PYPI_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        UPSTREAM_USERNAME_ENV,
        UPSTREAM_PASSWORD_ENV,
    }
)


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` less every variable of :data:`SECRET_ENV_VARS`: the environment of a child."""
    return {k: v for k, v in env.items() if k not in SECRET_ENV_VARS}


class CredentialsError(InfraError, ValueError):
    """Credentials that HTTP Basic auth or an htpasswd file cannot carry."""


@dataclass(frozen=True)
class Credentials:
    """A username and password for HTTP Basic auth against an index."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        # Basic auth splits on the first ":", htpasswd on ":" and lines: either breaks silently.
        if not self.username or ":" in self.username or _has_control(self.username):
            raise CredentialsError("username must be non-empty, without ':' or control characters")
        if _has_control(self.password):
            raise CredentialsError("password must not contain control characters")

    @classmethod
    def generate(cls) -> Credentials:
        """Fresh random credentials, so a local target never has a known or reused password."""
        return cls(
            username=f"pipstorm-{secrets.token_hex(4)}",
            password=secrets.token_urlsafe(24),
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], username_var: str, password_var: str
    ) -> Credentials | None:
        """Credentials from two environment variables; None when the username is unset."""
        username = environ.get(username_var, "")
        if not username:
            return None
        return cls(username=username, password=environ.get(password_var, ""))

    def basic_auth_header(self) -> str:
        """The value of an ``Authorization`` header: ``Basic <base64(user:password)>``."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"

    def write_htpasswd(self, path: Path) -> None:
        """Write a one-user htpasswd file (apr1 hash), readable by its owner only.

        apr1 rather than bcrypt: pypiserver checks the password on every request, and bcrypt at
        cost 12 costs ~200 ms of server CPU per request, which would dominate any load test.
        The line is written here with passlib's apr1 handler rather than ``HtpasswdFile``, whose
        import probes bcrypt and prints a traceback with bcrypt >= 4.1 (pypiserver still reads
        the file with ``HtpasswdFile``).
        """
        with warnings.catch_warnings():
            # passlib 1.7.4 imports the stdlib ``crypt`` module, deprecated since Python 3.11.
            warnings.filterwarnings("ignore", "'crypt' is deprecated", DeprecationWarning)
            from passlib.hash import apr_md5_crypt

        line = f"{self.username}:{apr_md5_crypt.hash(self.password)}\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as htpasswd:
            htpasswd.write(line)


def _has_control(text: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 for char in text)
