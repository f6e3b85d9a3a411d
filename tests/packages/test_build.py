from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipstorm.packages.build import PAYLOAD_FILENAME, ZIP_DATE_TIME, build_corpus, payload_chunks
from pipstorm.packages.spec import CorpusError, CorpusSpec, wheel_filename
from tests.packages.wheel_checks import record_problems, scrubbed_env, sha256_of_files

SMALL = CorpusSpec(packages=3, versions=("1.0.0", "2.0.0"))


def test_wheels_are_written_flat_in_release_order(tmp_path: Path) -> None:
    wheels = build_corpus(SMALL, tmp_path / "out")
    expected = [tmp_path / "out" / wheel_filename(p, v) for p, v in SMALL.releases()]
    assert wheels == expected
    assert sorted((tmp_path / "out").iterdir()) == sorted(expected)


def test_every_record_hash_matches_the_wheel_content(tmp_path: Path) -> None:
    wheels = build_corpus(small_with_payload(kb=2), tmp_path)
    assert [problem for wheel in wheels for problem in record_problems(wheel)] == []


def test_same_spec_gives_the_same_bytes_whatever_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = small_with_payload(kb=3)
    build_corpus(spec, tmp_path / "first")
    # What could leak into the bytes: the zip timestamp poetry-core takes from
    # SOURCE_DATE_EPOCH, file permissions through the umask, and the build location.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    previous_umask = os.umask(0o077)
    try:
        build_corpus(spec, tmp_path / "elsewhere" / "second")
    finally:
        os.umask(previous_umask)
    first = sha256_of_files(tmp_path / "first")
    assert len(first) == len(spec.releases())
    assert first == sha256_of_files(tmp_path / "elsewhere" / "second")


def test_zip_entries_have_fixed_dates_permissions_and_order(tmp_path: Path) -> None:
    spec = small_with_payload(kb=1)
    for (project, version), wheel in zip(
        spec.releases(), build_corpus(spec, tmp_path), strict=True
    ):
        with zipfile.ZipFile(wheel) as archive:
            infos = archive.infolist()
        module, dist_info = project.replace("-", "_"), f"{project.replace('-', '_')}-{version}"
        # Package files sorted, then dist-info sorted, RECORD last (it hashes the others).
        assert [info.filename for info in infos] == [
            f"{module}/__init__.py",
            f"{module}/{PAYLOAD_FILENAME}",
            f"{dist_info}.dist-info/METADATA",
            f"{dist_info}.dist-info/WHEEL",
            f"{dist_info}.dist-info/RECORD",
        ]
        for info in infos:
            assert info.date_time == ZIP_DATE_TIME
            assert (info.external_attr >> 16) & 0o777 == 0o644


def test_payload_is_sized_incompressible_and_distinct_per_release(tmp_path: Path) -> None:
    spec = small_with_payload(kb=16)
    wheels = build_corpus(spec, tmp_path)
    payloads = []
    for (project, version), wheel in zip(spec.releases(), wheels, strict=True):
        module = project.replace("-", "_")
        with zipfile.ZipFile(wheel) as archive:
            payload = archive.read(f"{module}/{PAYLOAD_FILENAME}")
        assert payload == b"".join(payload_chunks(project, version, 16 * 1024))
        assert wheel.stat().st_size > 16 * 1024  # random bytes do not deflate away
        payloads.append(payload)
    assert len(set(payloads)) == len(payloads)


def test_payload_chunks_cover_the_exact_size_across_chunk_boundaries() -> None:
    size = 2 * 1024 * 1024 + 5
    chunks = list(payload_chunks("p", "1.0.0", size))
    assert len(chunks) == 3
    assert sum(len(c) for c in chunks) == size
    assert b"".join(payload_chunks("p", "1.0.0", 10)) == chunks[0][:10]
    assert list(payload_chunks("p", "1.0.0", 0)) == []


def test_no_payload_file_by_default(tmp_path: Path) -> None:
    (wheel,) = build_corpus(CorpusSpec(packages=1, versions=("1.0.0",)), tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        assert sorted(archive.namelist()) == [
            "test_package_000-1.0.0.dist-info/METADATA",
            "test_package_000-1.0.0.dist-info/RECORD",
            "test_package_000-1.0.0.dist-info/WHEEL",
            "test_package_000/__init__.py",
        ]


def test_pip_installs_them_and_they_import_with_their_version(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheels"
    build_corpus(small_with_payload(kb=1), wheel_dir)
    target = tmp_path / "target"
    env = scrubbed_env()
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-cache-dir"]
    requirements = ["test-package-000==1.0.0", "test-package-001", "test-package-002<2"]
    subprocess.run(
        [*pip, "--find-links", str(wheel_dir), "--target", str(target), *requirements],
        env=env,
        check=True,
        timeout=120,
    )
    probe = (
        "import test_package_000, test_package_001, test_package_002;"
        "print(test_package_000.__version__, test_package_001.__version__,"
        " test_package_002.__version__)"
    )
    shown = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.stdout.split() == ["1.0.0", "2.0.0", "1.0.0"]


def test_default_corpus_cold_build(tmp_path: Path) -> None:
    spec = CorpusSpec()
    wheels = build_corpus(spec, tmp_path)
    assert len(wheels) == 300
    assert {w.name for w in tmp_path.iterdir()} == {
        wheel_filename(p, v) for p, v in spec.releases()
    }
    assert [problem for wheel in wheels for problem in record_problems(wheel)] == []


def test_unwritable_output_is_a_one_line_corpus_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CorpusError, match="cannot build the corpus into") as caught:
        build_corpus(SMALL, blocker / "out")
    assert "\n" not in str(caught.value)


def small_with_payload(kb: int) -> CorpusSpec:
    return CorpusSpec(packages=3, versions=("1.0.0", "2.0.0"), payload_kb=kb)
