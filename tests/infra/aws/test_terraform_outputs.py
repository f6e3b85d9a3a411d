"""``--target terraform:DIR`` reads the stack from a fake ``terraform`` on PATH.

The fake prints a canned ``output -json`` document and records its argv and environment, so the
tests can check the password never reaches a command line or the child's environment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipstorm.infra.aws.stack import StackDimensions
from pipstorm.infra.aws.terraform_outputs import TerraformOutputError, read_stack
from tests.infra.aws.support import install_fake_terraform

PASSWORD = "s3cret-Pa55word-from-secrets-manager"  # noqa: S105 - a test value


def output(value: object, *, sensitive: bool = False) -> dict[str, object]:
    return {"sensitive": sensitive, "type": "string", "value": value}


FULL_OUTPUTS = {
    "pypi_url": output("https://pypiserver.example.com"),
    "pypi_server_urls": output(["https://pypiserver.example.com", "https://pypi2.example.com"]),
    "pypi_username": output("pypiuser", sensitive=True),
    "pypi_password": output(PASSWORD, sensitive=True),
    "aws_region": output("us-west-2"),
    "ecs_cluster_name": output("pypiserver"),
    "ecs_service_name": output("pypiserver"),
    "efs_file_system_id": output("fs-0123456789abcdef0"),
    "alb_arn_suffix": output("app/pypiserver/0123456789abcdef"),
    "target_group_arn_suffix": output("targetgroup/pypiserver/fedcba9876543210"),
    "capacity_info": {"sensitive": False, "type": ["object", {}], "value": {"tasks": 4}},
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "stack"
    directory.mkdir()
    return directory


def environ(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPI_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def test_reads_url_credentials_dimensions_and_region(tmp_path: Path, root: Path) -> None:
    record = tmp_path / "record.json"
    install_fake_terraform(tmp_path / "bin", record, stdout=json.dumps(FULL_OUTPUTS))
    stack = read_stack(
        root,
        environ=environ(tmp_path / "bin", PYPI_PASSWORD="from-env", PIPSTORM_UPSTREAM_PASSWORD="x"),  # noqa: S106
    )
    assert stack.index_url == "https://pypiserver.example.com/simple/"  # the root's simple index
    assert stack.credentials is not None
    assert stack.credentials.username == "pypiuser"
    assert stack.credentials.password == PASSWORD  # outputs win over the environment
    assert stack.region == "us-west-2"
    assert stack.dimensions == StackDimensions(
        ecs_cluster_name="pypiserver",
        ecs_service_name="pypiserver",
        efs_file_system_id="fs-0123456789abcdef0",
        alb_arn_suffix="app/pypiserver/0123456789abcdef",
        target_group_arn_suffix="targetgroup/pypiserver/fedcba9876543210",
    )
    seen = json.loads(record.read_text())
    assert seen["argv"] == [f"-chdir={root}", "output", "-json", "-no-color"]
    # The child learns no index credential from us, and the password is in no argv.
    assert "PYPI_PASSWORD" not in seen["env"]
    assert "PIPSTORM_UPSTREAM_PASSWORD" not in seen["env"]
    assert PASSWORD not in " ".join(seen["argv"])
    assert PASSWORD not in repr(stack)


def test_the_modules_own_url_output_and_the_seeds_variables_fill_gaps(
    tmp_path: Path, root: Path
) -> None:
    record = tmp_path / "record.json"
    module_only = {
        "pypi_server_urls": output(["https://a.example.com", "https://b.example.com"]),
        "ecs_cluster_name": output("cluster"),
    }
    install_fake_terraform(tmp_path / "bin", record, stdout=json.dumps(module_only))
    stack = read_stack(
        root,
        environ=environ(tmp_path / "bin", PYPI_USERNAME="envuser", PYPI_PASSWORD="envpw"),  # noqa: S106
    )
    assert stack.index_url == "https://a.example.com/simple/"
    assert stack.credentials is not None
    assert (stack.credentials.username, stack.credentials.password) == ("envuser", "envpw")
    assert stack.dimensions.ecs_cluster_name == "cluster"
    assert stack.dimensions.efs_file_system_id is None
    assert stack.region is None


def test_pypi_url_from_the_environment_when_no_output_has_one(tmp_path: Path, root: Path) -> None:
    install_fake_terraform(tmp_path / "bin", tmp_path / "r.json", stdout="{}")
    stack = read_stack(
        root, environ=environ(tmp_path / "bin", PYPI_URL="https://seed.example/pypi/simple/")
    )
    assert stack.index_url == "https://seed.example/pypi/simple/"  # a path is taken as given
    assert stack.credentials is None


def test_no_url_anywhere_says_so(tmp_path: Path, root: Path) -> None:
    install_fake_terraform(tmp_path / "bin", tmp_path / "r.json", stdout="{}")
    with pytest.raises(TerraformOutputError, match=r"no pypi_url .* PYPI_URL is not set"):
        read_stack(root, environ=environ(tmp_path / "bin"))


def test_terraform_failure_is_one_line_from_its_error_box(tmp_path: Path, root: Path) -> None:
    stderr = (
        '╷\n│ Error: Backend initialization required, please run "terraform init"\n│ \n'
        '│ Reason: Initial configuration of the requested backend "s3"\n╵\n'
    )
    install_fake_terraform(tmp_path / "bin", tmp_path / "r.json", stderr=stderr, code=1)
    with pytest.raises(TerraformOutputError) as caught:
        read_stack(root, environ=environ(tmp_path / "bin"))
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith(
        'failed (exit 1): Backend initialization required, please run "terraform init"'
    )


def test_a_broken_document_never_echoes_the_password(tmp_path: Path, root: Path) -> None:
    truncated = json.dumps(FULL_OUTPUTS)[:-5]
    install_fake_terraform(tmp_path / "bin", tmp_path / "r.json", stdout=truncated)
    with pytest.raises(TerraformOutputError) as caught:
        read_stack(root, environ=environ(tmp_path / "bin"))
    assert "did not print a JSON document" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert PASSWORD not in str(caught.value)


def test_bad_credentials_in_outputs_name_the_problem_not_the_value(
    tmp_path: Path, root: Path
) -> None:
    outputs = dict(FULL_OUTPUTS, pypi_username=output("user:with-colon", sensitive=True))
    install_fake_terraform(tmp_path / "bin", tmp_path / "r.json", stdout=json.dumps(outputs))
    with pytest.raises(TerraformOutputError, match="unusable credentials") as caught:
        read_stack(root, environ=environ(tmp_path / "bin"))
    assert PASSWORD not in str(caught.value)


def test_a_url_with_credentials_in_it_is_refused(tmp_path: Path, root: Path) -> None:
    outputs = {"pypi_url": output(f"https://u:{PASSWORD}@pypi.example.com")}
    install_fake_terraform(tmp_path / "bin", tmp_path / "r.json", stdout=json.dumps(outputs))
    with pytest.raises(TerraformOutputError, match="must not carry credentials") as caught:
        read_stack(root, environ=environ(tmp_path / "bin"))
    assert PASSWORD not in str(caught.value)


def test_missing_terraform_and_missing_directory(tmp_path: Path, root: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(TerraformOutputError, match="'terraform' not found on PATH"):
        read_stack(root, environ={"PATH": str(empty)})
    with pytest.raises(TerraformOutputError, match="is not a directory"):
        read_stack(tmp_path / "nowhere", environ={"PATH": str(empty)})
