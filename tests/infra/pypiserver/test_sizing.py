"""Sizing presets and knobs: the seed module's figures, one-line errors, real htpasswd hashes."""

from __future__ import annotations

import warnings

import pytest

from pipstorm.infra.credentials import Credentials
from pipstorm.infra.pypiserver.sizing import (
    PRESETS,
    SizingError,
    custom,
    htpasswd_line,
    parse_auth,
    parse_memory,
    preset,
)


def test_presets_follow_the_seed_modules_formulas() -> None:
    # locals.tf: workers = max(2, min(8, floor(mem / 128))); cpus: the t3 baseline share.
    expected = {
        "baseline": ("t3.micro", 128, 2, 0.2),
        "optimized": ("t3.small", 512, 4, 0.4),
        "heavy": ("t3.medium", 1024, 8, 0.4),
    }
    for name, (instance, memory_mb, workers, cpus) in expected.items():
        sizing = preset(name)
        assert (sizing.instance, sizing.memory_mb, sizing.workers, sizing.cpus) == (
            instance,
            memory_mb,
            workers,
            cpus,
        )
        # files/gunicorn.conf.py and main.tf: gevent workers, simple-dir, default hashing.
        assert (sizing.worker_class, sizing.backend, sizing.hash_algo) == (
            "gevent",
            "simple-dir",
            "sha256",
        )
        assert sizing.confined
    assert set(PRESETS) == set(expected)


def test_knobs_override_a_preset_and_rename_it() -> None:
    base = preset("baseline")
    assert base.with_knobs() is base
    assert base.with_knobs(workers=2) is base  # no change, same name
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
    assert "bcrypt:12" in changed.label()
    record = changed.as_record()
    assert record["memory_mb"] == 64
    assert record["instance"] == "t3.micro"
    plain = custom(3)
    assert not plain.confined
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
