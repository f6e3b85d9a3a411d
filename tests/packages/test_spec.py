from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pipstorm.packages.build import build_corpus
from pipstorm.packages.spec import (
    MAX_PAYLOAD_KB,
    CorpusError,
    CorpusSpec,
    module_name,
    wheel_filename,
)


def test_default_spec_is_300_wheels_of_100_projects() -> None:
    spec = CorpusSpec()
    names = spec.project_names()
    assert names[0] == "test-package-000"
    assert names[-1] == "test-package-099"
    assert len(names) == 100
    releases = spec.releases()
    assert len(releases) == 300
    assert releases[:3] == [
        ("test-package-000", "1.0.0"),
        ("test-package-000", "1.1.0"),
        ("test-package-000", "2.0.0"),
    ]
    assert len(set(releases)) == 300


def test_names_keep_three_digits_and_widen_past_999() -> None:
    assert CorpusSpec(packages=1).project_names() == ["test-package-000"]
    wide = CorpusSpec(packages=1001, prefix="pkg").project_names()
    assert wide[0] == "pkg-0000"
    assert wide[-1] == "pkg-1000"
    assert wide == sorted(wide)


def test_derived_file_and_module_names() -> None:
    assert module_name("test-package-007") == "test_package_007"
    assert wheel_filename("test-package-007", "1.1.0") == "test_package_007-1.1.0-py3-none-any.whl"


def test_versions_given_as_a_list_are_stored_as_a_tuple() -> None:
    spec = CorpusSpec(versions=["1.0.0", "2.0.0"])  # type: ignore[arg-type]
    assert spec.versions == ("1.0.0", "2.0.0")
    assert spec == CorpusSpec(versions=("1.0.0", "2.0.0"))
    assert hash(spec) == hash(CorpusSpec(versions=("1.0.0", "2.0.0")))


def test_key_is_short_stable_and_depends_on_every_field() -> None:
    base = CorpusSpec()
    assert re.fullmatch(r"[0-9a-f]{16}", base.key())
    assert base.key() == CorpusSpec().key()
    variants = [
        dataclasses.replace(base, packages=99),
        dataclasses.replace(base, versions=("1.0.0", "1.1.0")),
        dataclasses.replace(base, versions=("2.0.0", "1.1.0", "1.0.0")),
        dataclasses.replace(base, payload_kb=1),
        dataclasses.replace(base, prefix="other-package"),
    ]
    keys = {spec.key() for spec in variants}
    assert len(keys) == len(variants)
    assert base.key() not in keys


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"packages": 0}, "packages"),
        ({"packages": -3}, "packages"),
        ({"packages": True}, "packages"),
        ({"packages": "10"}, "packages"),
        ({"payload_kb": -1}, "payload_kb"),
        ({"payload_kb": MAX_PAYLOAD_KB + 1}, "payload_kb"),
        ({"payload_kb": 1.5}, "payload_kb"),
        ({"versions": ()}, "versions"),
        ({"versions": "1.0.0"}, "versions"),
        ({"versions": ("1.0.0", "banana")}, "versions"),
        ({"versions": ("1.0",)}, None),  # valid: canonical as written
        ({"versions": ("01.0",)}, "versions"),
        ({"versions": ("1.0.0+local",)}, "versions"),
        ({"versions": ("v1.0",)}, "versions"),
        ({"versions": ("1.0.0", "1.0.0")}, "versions"),
        ({"versions": (1,)}, "versions"),
        ({"prefix": "Test-Package"}, "prefix"),
        ({"prefix": "test_package"}, "prefix"),
        ({"prefix": "1st"}, "prefix"),
        ({"prefix": ""}, "prefix"),
        ({"prefix": "a--b"}, "prefix"),
    ],
)
def test_bad_parameters_give_one_line_naming_the_field(
    kwargs: dict[str, object], field: str | None
) -> None:
    if field is None:
        spec = CorpusSpec(**kwargs)  # type: ignore[arg-type]
        for key, value in kwargs.items():  # accepted as given, not silently normalised
            assert getattr(spec, key) == value, key
        return
    with pytest.raises(CorpusError) as caught:
        CorpusSpec(**kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(field)
    assert "\n" not in message


def test_pre_and_post_releases_are_accepted() -> None:
    spec = CorpusSpec(packages=1, versions=("1.0.0a1", "1.0.0rc2", "1.0.0.post1", "2.0.dev3"))
    assert len(spec.releases()) == 4


def test_a_listed_corpus_releases_exactly_its_pairs_and_builds_them(tmp_path: Path) -> None:
    listed = (("zope-interface", "6.1"), ("requests", "2.31.0"), ("requests", "2.9.0"))
    spec = CorpusSpec(listed=listed)
    assert spec.project_names() == ["requests", "zope-interface"]
    assert spec.releases() == [
        ("requests", "2.9.0"), ("requests", "2.31.0"), ("zope-interface", "6.1")
    ]  # fmt: skip
    assert spec.key() != CorpusSpec().key()
    built = build_corpus(spec, tmp_path / "out")
    assert [p.name for p in built] == [wheel_filename(p, v) for p, v in spec.releases()]


def test_generated_corpora_keep_their_cache_keys() -> None:
    # The key of the default corpus before `listed` existed (CORPUS_FORMAT 1): changing it
    # would orphan every cached corpus.
    assert CorpusSpec().key() == "cdd60b002919fd9c"  # measured before `listed` was added
    assert CorpusSpec(listed=()).key() == CorpusSpec().key()


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        ((("Requests", "1.0"),), "not a normalized project name"),
        ((("requests", "1.0-beta"),), "not a canonical version"),
        ((("requests", "1.0"), ("requests", "1.0")), "listed more than once"),
        ((("requests",),), "not a \\(project, version\\) pair"),
    ],
)
def test_listed_releases_are_checked(listed: tuple[tuple[str, ...], ...], message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        CorpusSpec(listed=listed)  # type: ignore[arg-type]
    with pytest.raises(CorpusError, match="no dependencies"):
        CorpusSpec(packages=4, dep_fan_out=1, dep_depth=1, listed=(("a", "1.0"),))
