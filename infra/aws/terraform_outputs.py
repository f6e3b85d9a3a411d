"""Read a deployed stack from ``terraform -chdir=DIR output -json``.

Terraform cannot run on the machines this is developed on, so the command is the whole contract
(tests put a fake ``terraform`` on PATH). The output document carries the index password: it is
parsed in memory, never logged, never put in an exception message (errors name outputs, not
values), and the child gets no pipstorm or seed credential variables in its environment.
Outputs win over ``PYPI_URL``/``PYPI_USERNAME``/``PYPI_PASSWORD``, which fill in what a root
does not output (the seed exported those from the same outputs by hand). The module outputs the
server's root URL; pypiserver's simple index is under ``/simple/``, so a URL without a path gets
it appended.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from pipstorm.infra.aws.stack import AwsStack, StackDimensions
from pipstorm.infra.credentials import (
    UPSTREAM_PASSWORD_ENV,
    UPSTREAM_USERNAME_ENV,
    Credentials,
    CredentialsError,
)
from pipstorm.infra.errors import InfraError

URL_VAR: Final = "PYPI_URL"
USERNAME_VAR: Final = "PYPI_USERNAME"
PASSWORD_VAR: Final = "PYPI_PASSWORD"  # noqa: S105 - the name of a variable
TERRAFORM_TIMEOUT_S: Final = 120.0
# Variables terraform has no use for and must not see: the index credentials.
_WITHHELD_FROM_TERRAFORM: Final = frozenset(
    {USERNAME_VAR, PASSWORD_VAR, UPSTREAM_USERNAME_ENV, UPSTREAM_PASSWORD_ENV}
)
# Output names for the URL, in order of preference: this repo's root, then the module's own.
_URL_OUTPUTS: Final = ("pypi_url", "pypi_server_urls")


class TerraformOutputError(InfraError):
    """The Terraform root cannot be read; the message is one line naming the problem."""


def read_stack(
    directory: Path,
    *,
    environ: Mapping[str, str] | None = None,
    terraform: str = "terraform",
    timeout: float = TERRAFORM_TIMEOUT_S,
) -> AwsStack:
    """The stack a Terraform root describes, from its outputs (and the seed's variables)."""
    env = dict(os.environ if environ is None else environ)
    document = run_terraform_output(directory, environ=env, terraform=terraform, timeout=timeout)
    return parse_outputs(document, environ=env, source=directory)


def run_terraform_output(
    directory: Path,
    *,
    environ: Mapping[str, str],
    terraform: str = "terraform",
    timeout: float = TERRAFORM_TIMEOUT_S,
) -> dict[str, object]:
    """``terraform -chdir=DIR output -json`` as a dict of output name -> value."""
    if not directory.is_dir():
        raise TerraformOutputError(f"terraform target {directory} is not a directory")
    executable = shutil.which(terraform, path=environ.get("PATH"))
    if executable is None:
        raise TerraformOutputError(
            f"{terraform!r} not found on PATH (needed to read the outputs of {directory}); "
            f"or set {URL_VAR}, {USERNAME_VAR} and {PASSWORD_VAR} and use --target url:..."
        )
    child_env = {k: v for k, v in environ.items() if k not in _WITHHELD_FROM_TERRAFORM}
    child_env["TF_IN_AUTOMATION"] = "1"  # no "run terraform apply next" hints on stderr
    try:
        completed = subprocess.run(
            [executable, f"-chdir={directory}", "output", "-json", "-no-color"],
            capture_output=True,
            env=child_env,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise TerraformOutputError(
            f"terraform output in {directory} did not answer within {timeout:g} s"
        ) from None
    except OSError as exc:
        raise TerraformOutputError(f"cannot run {executable}: {exc.strerror}") from None
    if completed.returncode != 0:
        raise TerraformOutputError(
            f"terraform output in {directory} failed (exit {completed.returncode}): "
            f"{_first_line(completed.stderr)}"
        )
    try:
        raw = json.loads(completed.stdout)
    except (ValueError, UnicodeDecodeError):
        # ``from None``: a JSONDecodeError keeps the whole document (the password) in ``doc``.
        raise TerraformOutputError(
            f"terraform output in {directory} did not print a JSON document"
        ) from None
    if not isinstance(raw, dict):
        raise TerraformOutputError(f"terraform output in {directory} is not a JSON object")
    outputs: dict[str, object] = {}
    for name, entry in raw.items():
        # Each output is {"sensitive": bool, "type": ..., "value": ...}.
        if isinstance(entry, dict) and "value" in entry:
            outputs[str(name)] = entry["value"]
    return outputs


def parse_outputs(
    outputs: Mapping[str, object],
    *,
    environ: Mapping[str, str],
    source: Path | None = None,
) -> AwsStack:
    """An ``AwsStack`` from output values; the seed's variables fill what the outputs lack."""
    where = f"terraform outputs of {source}" if source else "terraform outputs"
    index_url = _index_url(outputs) or environ.get(URL_VAR, "")
    if not index_url:
        raise TerraformOutputError(
            f"{where} have no pypi_url or pypi_server_urls (run terraform apply first?), "
            f"and {URL_VAR} is not set"
        )
    parts = urlsplit(index_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TerraformOutputError(f"{where}: the index URL is not an http(s) URL")
    if parts.username or parts.password:
        raise TerraformOutputError(f"{where}: the index URL must not carry credentials")
    username = _string(outputs.get("pypi_username")) or environ.get(USERNAME_VAR, "")
    password = _string(outputs.get("pypi_password")) or environ.get(PASSWORD_VAR, "")
    credentials: Credentials | None = None
    if username:
        try:
            credentials = Credentials(username=username, password=password)
        except CredentialsError as exc:
            raise TerraformOutputError(f"{where}: unusable credentials: {exc}") from None
    dimensions = StackDimensions(
        **{name: _string(outputs.get(name)) for name in StackDimensions.field_names()}
    )
    return AwsStack(
        index_url=_simple_index(index_url),
        credentials=credentials,
        dimensions=dimensions,
        region=_string(outputs.get("aws_region")),
        source=source,
    )


def _simple_index(url: str) -> str:
    """``https://host`` -> ``https://host/simple/``; a URL with a path is taken as given."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return parts._replace(path="/simple/").geturl()
    return url


def _index_url(outputs: Mapping[str, object]) -> str | None:
    for name in _URL_OUTPUTS:
        value = outputs.get(name)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str) and value:
            return value
    return None


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _first_line(stderr: bytes) -> str:
    """The first line of terraform's error, without its box-drawing frame (``╷ │ Error: ...``)."""
    for line in stderr.decode("utf-8", "replace").splitlines():
        text = line.strip().strip("╷│╵").strip().removeprefix("Error:").strip()
        if text:
            return text[:300]
    return "no message on stderr"
