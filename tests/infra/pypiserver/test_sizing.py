"""Sizing presets and knobs: the seed module's figures, one-line errors, real htpasswd hashes."""

from __future__ import annotations

import warnings

import pytest

from pipstorm.infra.credentials import Credentials
from pipstorm.infra.pypiserver.deployments import Deployment
from pipstorm.infra.pypiserver.sizing import (
    PRESETS,
    SizingError,
    custom,
    htpasswd_line,
    parse_auth,
    parse_memory,
    preset,
)


def test_presets_are_the_modules_deployments() -> None:
    # Worked by hand from the module's formulas (locals.tf 24-37, main.tf 4-53) and AWS's
    # figures; docs/SIZING.md works the c6a.xlarge one itself: 6 tasks per instance, 12 in all.
    expected = {
        # name: (tasks, workers per task, cpu units, vCPUs, MiB, instances)
        "baseline": (2, 2, 340, 2.0, 256, 1),  # t3.micro, 128: the incident's 2 x 128 MB
        "optimized": (3, 4, 640, 2.0, 1536, 1),  # t3.small, 512: 3 tasks (locals.tf 33)
        "heavy": (1, 8, 1240, 2.0, 1024, 1),  # t3.medium, 1024: 1240 units leave room for 1
        "validated": (12, 4, 640, 8.0, 6144, 2),  # 2 x c6a.xlarge, 512
    }
    for name, (tasks, per_task, units, cpus, memory_mb, instances) in expected.items():
        sizing = preset(name)
        derived = sizing.deployment or {}
        assert (derived["tasks"], derived["workers_per_task"]) == (tasks, per_task), name
        assert derived["container_cpu_units"] == units
        assert derived["instances"] == instances
        assert derived["task_max_count"] == 2 * tasks
        assert (sizing.cpus, sizing.memory_mb, sizing.workers) == (
            cpus,
            memory_mb,
            tasks * per_task,
        )
        # files/gunicorn.conf.py and main.tf: gevent workers, simple-dir, default hashing,
        # and the htpasswd Terraform writes: bcrypt at Go's default cost.
        assert (sizing.worker_class, sizing.backend, sizing.hash_algo, sizing.auth) == (
            "gevent",
            "simple-dir",
            "sha256",
            "bcrypt:10",
        )
        assert sizing.confined
    # The launch template sets no credit_specification: a T3 is unlimited, never capped.
    assert (preset("baseline").deployment or {})["credit_mode"] == "unlimited"
    assert (preset("validated").deployment or {})["credit_mode"] is None
    assert set(PRESETS) == set(expected)


def test_the_module_formulas_at_their_edges() -> None:
    assert Deployment("t3.small", 256).workers_per_task == 2  # variables.tf 637
    assert Deployment("t3.small", 768).workers_per_task == 6  # variables.tf 639
    assert Deployment("t3.medium", 4096).workers_per_task == 8  # capped at 8
    # variables.tf 612-614: 2 workers -> 340 units -> 5 tasks by CPU on a t3.small; RAM allows 6.
    assert Deployment("t3.small", 256).tasks_per_instance == 5
    # The host leaves the tasks its RAM less 300 MB: 1024 MB containers on a t3.micro cannot all
    # have their limit (one task by the formulas' floor of 1, 724 MB left).
    assert Deployment("t3.micro", 1024).memory_mb == 724
    with pytest.raises(ValueError, match="no published figures"):
        Deployment("m5.large", 512)


def test_scaling_divides_the_capacity_not_the_hash() -> None:
    validated = preset("validated")
    scaled = validated.scaled(8)
    assert (scaled.cpus, scaled.workers, scaled.memory_mb, scaled.scale) == (1.0, 6, 768, 8)
    assert scaled.auth == validated.auth  # the per-request cost is the same at any scale
    assert validated.scaled(1) is validated
    assert preset("baseline").scaled(8).workers == 1  # never below one worker
    assert "1/8 scale" in scaled.label()
    assert scaled.as_record()["scale"] == 8
    with pytest.raises(SizingError, match="--scale"):
        validated.scaled(0)


def test_knobs_override_a_preset_and_rename_it() -> None:
    base = preset("baseline")
    assert base.with_knobs() is base
    assert base.with_knobs(workers=4) is base  # no change, same name
    changed = base.with_knobs(cpus=0.2, memory="64M", auth="bcrypt:12", hash_algo="off")
    assert changed.name == "baseline+"
    assert (changed.cpus, changed.memory_bytes, changed.auth, changed.hash_algo) == (
        0.2,
        64 * 2**20,
        "bcrypt:12",
        "off",
    )
    assert changed.with_knobs(workers=3).name == "baseline+"
    assert "0.2 vCPU" in changed.label()
    assert changed.deployment == base.deployment  # where the preset came from, kept
    assert "bcrypt:12" in changed.label()
    record = changed.as_record()
    assert record["memory_mb"] == 64
    assert record["instance"].startswith("t3.micro")
    assert record["deployment"]["instance_type"] == "t3.micro"
    plain = custom(3)
    assert not plain.confined
    assert plain.auth == "bcrypt:10"  # every sized target authenticates as deployed
    assert plain.with_knobs(cpus=1.0).name == "custom"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("128M", 128 * 2**20), ("512MiB", 512 * 2**20), ("1G", 2**30), ("1.5g", 3 * 2**29)],
)
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected
    assert parse_memory("256") == 256 * 2**20  # a bare number is MiB, as container_memory


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: preset("t3.nano"), "unknown sizing"),
        (lambda: parse_memory("lots"), "--memory"),
        (lambda: preset("baseline").with_knobs(memory="1M"), "at least 16M"),
        (lambda: preset("baseline").with_knobs(cpus=0.0), "--cpus"),
        (lambda: preset("baseline").with_knobs(workers=0), "--workers"),
        (lambda: preset("baseline").with_knobs(worker_class="eventlet"), "--worker-class"),
        (lambda: preset("baseline").with_knobs(hash_algo="md5"), "--hash-algo"),
        (lambda: preset("baseline").with_knobs(backend="s3"), "--backend"),
        (lambda: parse_auth("bcrypt"), "--auth"),
        (lambda: parse_auth("apr1:5"), "--auth"),
        (lambda: parse_auth("bcrypt:3"), "bcrypt cost"),
        (lambda: parse_auth("bcrypt:x"), "bcrypt cost"),
    ],
)
def test_bad_knobs_are_one_line_errors(build: object, message: str) -> None:
    with pytest.raises(SizingError, match=message) as excinfo:
        build()  # type: ignore[operator]
    assert "\n" not in str(excinfo.value)


def test_htpasswd_lines_are_real_hashes_of_the_password() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib.hash import apr_md5_crypt, bcrypt

    credentials = Credentials.generate()
    assert htpasswd_line(credentials, "none") is None
    apr1 = htpasswd_line(credentials, "apr1")
    assert apr1 is not None
    user, digest = apr1.strip().split(":", 1)
    assert user == credentials.username
    assert digest.startswith("$apr1$")
    assert apr_md5_crypt.verify(credentials.password, digest)
    line = htpasswd_line(credentials, "bcrypt:5")
    assert line is not None
    digest = line.strip().split(":", 1)[1]
    assert digest.startswith("$2y$05$")
    assert bcrypt.verify(credentials.password, digest)
    assert not bcrypt.verify("wrong", digest)
