"""The Terraform root in infra/terraform/pypiserver, checked by parsing it (no terraform here).

What could silently rot: a variable without a description, a module input the pinned module
does not declare, an output pipstorm reads that the root no longer has, a preset that does not
set the sizing its name promises, an unpinned module source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from pipstorm.infra.aws.stack import StackDimensions

ROOT = Path(__file__).resolve().parents[3] / "infra" / "terraform" / "pypiserver"
OPTIONS = SerializationOptions(
    strip_string_quotes=True, preserve_heredocs=False, explicit_blocks=False, with_comments=False
)
MODULE_SOURCE = "registry.infrahouse.com/infrahouse/pypiserver/aws"
# The input variables of infrahouse/terraform-aws-pypiserver at tag 2.3.0 (variables.tf): the
# names only, so that a module input misspelled here fails a test instead of `terraform plan`.
MODULE_2_3_0_VARIABLES = frozenset(
    {
        "ami_id", "asg_instance_type", "asg_min_size", "asg_max_size", "asg_subnets",
        "dns_names", "environment", "load_balancer_subnets", "secret_readers", "service_name",
        "task_max_count", "task_min_count", "users", "zone_id",
        "extra_instance_profile_permissions", "cloudinit_extra_commands", "extra_files",
        "access_log_force_destroy", "backups_force_destroy", "enable_efs_backup",
        "enable_cloudwatch_dashboard", "backup_retention_days", "backup_schedule",
        "efs_throughput_mode", "efs_provisioned_throughput_in_mibps", "efs_lifecycle_policy",
        "docker_image_tag", "alarm_emails", "alarm_topic_arns", "efs_burst_credit_threshold",
        "container_memory", "container_memory_reservation", "container_cpu", "gunicorn_workers",
    }
)  # fmt: skip
MODULE_2_3_0_REQUIRED = frozenset(
    {"asg_subnets", "load_balancer_subnets", "zone_id", "alarm_emails"}
)
# Outputs of the module at 2.3.0 (outputs.tf) that this root reads.
MODULE_2_3_0_OUTPUTS = frozenset(
    {
        "pypi_server_urls", "pypi_username", "pypi_password", "pypi_user_secret",
        "pypi_user_secret_arn", "pypi_load_balancer_arn", "ecs_service_arn", "ecs_cluster_name",
        "ecs_service_name", "asg_name", "cloudwatch_alarm_sns_topic_arn", "cloudwatch_alarm_arns",
        "task_min_count", "capacity_info", "cloudwatch_dashboard_url",
    }
)  # fmt: skip
# Presets: the seed's three sizings and the instance RAM (MiB) of each type.
PRESETS = {
    "baseline": ("t3.micro", 128),
    "optimized": ("t3.small", 512),
    "heavy": ("t3.medium", 1024),
}
INSTANCE_RAM_MIB = {"t3.micro": 1024, "t3.small": 2048, "t3.medium": 4096}
MODULE_OVERHEAD_MIB = 800  # the module's system (300) + page cache (500) reservation


def load(path: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = hcl2.loads(
        path.read_text(encoding="utf-8"), serialization_options=OPTIONS
    )
    return parsed


def blocks(kind: str) -> dict[str, dict[str, Any]]:
    """All blocks of one kind (``variable``, ``output``, ``module``) across the root's .tf files."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(ROOT.glob("*.tf")):
        for block in load(path).get(kind, []):
            for name, body in block.items():
                assert name not in found, f"{kind} {name} declared twice"
                found[name] = body
    return found


def all_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(ROOT.glob("*.tf")))


def test_every_tf_file_parses() -> None:
    names = sorted(path.name for path in ROOT.glob("*.tf"))
    assert names == [
        "datasources.tf", "main.tf", "outputs.tf", "providers.tf", "terraform.tf", "variables.tf"
    ]  # fmt: skip
    for path in ROOT.glob("*.tf*"):
        assert isinstance(load(path), dict), path


def test_every_variable_is_typed_documented_and_used() -> None:
    variables = blocks("variable")
    text = all_text()
    for name, body in variables.items():
        assert len(str(body.get("description", ""))) > 20, f"variable {name} is undocumented"
        assert "type" in body, f"variable {name} has no type"
        assert re.search(rf"\bvar\.{name}\b", text), f"variable {name} is never used"
    referenced = set(re.findall(r"\bvar\.([a-z_]+)", text))
    assert referenced <= set(variables), referenced - set(variables)


def test_the_module_is_pinned_and_given_only_inputs_it_declares() -> None:
    modules = blocks("module")
    assert list(modules) == ["pypiserver"]
    module = modules["pypiserver"]
    assert module["source"] == MODULE_SOURCE
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(module["version"])), "pin an exact version"
    assert module["version"] == "2.3.0"
    inputs = set(module) - {"source", "version", "providers"}
    assert inputs <= MODULE_2_3_0_VARIABLES, inputs - MODULE_2_3_0_VARIABLES
    assert inputs >= MODULE_2_3_0_REQUIRED, MODULE_2_3_0_REQUIRED - inputs
    used_outputs = set(re.findall(r"module\.pypiserver\.([a-z_]+)", all_text()))
    assert used_outputs <= MODULE_2_3_0_OUTPUTS, used_outputs - MODULE_2_3_0_OUTPUTS


def test_outputs_are_what_pipstorm_reads_and_secrets_are_sensitive() -> None:
    outputs = blocks("output")
    wanted = {"pypi_url", "pypi_username", "pypi_password", "aws_region"}
    wanted |= set(StackDimensions.field_names())
    assert wanted <= set(outputs), wanted - set(outputs)
    for name, body in outputs.items():
        assert str(body.get("description", "")), f"output {name} is undocumented"
        secret = name in {"pypi_username", "pypi_password"}
        assert bool(body.get("sensitive", False)) is secret, f"output {name}: sensitive wrong"
    assert outputs["pypi_url"]["value"] == "${module.pypiserver.pypi_server_urls[0]}"
    assert outputs["alb_arn_suffix"]["value"].endswith(".arn_suffix}")
    assert outputs["target_group_arn_suffix"]["value"].endswith(".arn_suffix}")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_sets_the_sizing_it_claims(preset: str) -> None:
    path = ROOT / f"{preset}.tfvars"
    values = load(path)
    instance, memory = PRESETS[preset]
    assert values == {"asg_instance_type": instance, "container_memory": memory}
    declared = blocks("variable")
    assert set(values) <= set(declared)
    # Documented: the file opens with a comment naming the preset and what it is for.
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# {preset}: "), first
    assert instance in path.read_text(encoding="utf-8").split("\n", 3)[1]
    # The module reserves 800 MiB per instance for the system and page cache; the container
    # must still fit, or ECS never places the task.
    assert memory * 0.75 <= INSTANCE_RAM_MIB[instance] - MODULE_OVERHEAD_MIB


def test_sizing_variables_have_no_default_so_a_preset_must_be_chosen() -> None:
    variables = blocks("variable")
    for name in ("asg_instance_type", "container_memory"):
        assert "default" not in variables[name], name


def test_the_example_tfvars_sets_every_other_required_variable() -> None:
    variables = blocks("variable")
    required = {name for name, body in variables.items() if "default" not in body}
    example = load(ROOT / "terraform.tfvars.example")
    assert set(example) <= set(variables)
    assert set(example) | {"asg_instance_type", "container_memory"} == required


def test_state_and_local_values_are_ignored_by_git() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    for name in ("terraform.tfstate", "terraform.tfvars", ".terraform/"):
        assert name in ignored
