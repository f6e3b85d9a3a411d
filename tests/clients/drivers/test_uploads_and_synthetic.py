"""The twine and synthetic drivers without a network: versions, URLs, conflicts, listings."""

from __future__ import annotations

import re
from pathlib import Path

from pipstorm.clients.drivers.protocol import ConflictAware
from pipstorm.clients.drivers.registry import driver_for
from pipstorm.clients.drivers.synthetic import find_file
from pipstorm.clients.drivers.twine import DRIVER as TWINE
from pipstorm.clients.drivers.twine import upload_version
from pipstorm.clients.process import Outcome
from pipstorm.clients.task import ClientTask
from pipstorm.packages.build import build_release
from pipstorm.packages.upload import upload_url_for

FILES = (
    ("test_package_001-1.0.0-py3-none-any.whl", "#sha256=aa"),
    ("test-package-001-1.1.0.tar.gz", "#sha256=bb"),
    ("test_package_001-1.1.0-py3-none-any.whl", "#sha256=cc"),
    ("test_package_001-1.1.0.post5-py3-none-any.whl", ""),
)
LISTING = "<html><body><h1>Links for test-package-001</h1>\n" + "".join(
    f'<a href="../../packages/{name}{fragment}">{name}</a><br>\n' for name, fragment in FILES
)


def outcome(exit_code: int, stdout: str) -> Outcome:
    return Outcome(("twine",), exit_code, 0.0, 1.0, 1.0, 0.1, 1000, stdout, "")


def test_upload_versions_are_valid_post_releases_and_unique() -> None:
    assert upload_version("1.1.0", 42) == "1.1.0.post42"
    assert upload_version("2.0.0rc1.post3", 7) == "2.0.0.post7"  # only the release segment
    drawn = {upload_version("1.0.0") for _ in range(200)}
    assert len(drawn) == 200
    assert all(re.fullmatch(r"1\.0\.0\.post[0-9]+", v) for v in drawn)


def test_uploads_go_to_the_run_prefix_root() -> None:
    # twine posts where the index takes uploads: the index URL less its (+)simple/ segment, so
    # pypiserver's root and devpi's /USER/INDEX/ both work behind the run's prefix
    assert upload_url_for("http://127.0.0.1:5/r/r00001/simple/") == "http://127.0.0.1:5/r/r00001/"
    assert upload_url_for("http://127.0.0.1:5/r/r00001/") == "http://127.0.0.1:5/r/r00001/"
    devpi = "http://127.0.0.1:5/r/r00001/u/i/+simple/"
    assert upload_url_for(devpi) == "http://127.0.0.1:5/r/r00001/u/i/"


def test_a_refused_duplicate_is_a_conflict_and_other_failures_are_not(tmp_path: Path) -> None:
    assert isinstance(TWINE, ConflictAware)
    build_release("test-package-001", "1.0.0.post1", tmp_path / "dist")
    task = ClientTask("r1", "twine", "test-package-001", "1.0.0", "http://127.0.0.1:5/r/r1/")
    # pypiserver answers twine with 400 and this body (409 to other clients).
    refused = "ERROR HTTPError: 400 Bad Request\n <pre>Package 'x.whl' already\n exists!</pre>"
    reason = TWINE.conflict(task, tmp_path, outcome(1, refused))
    assert reason is not None and "test_package_001-1.0.0.post1" in reason
    assert TWINE.conflict(task, tmp_path, outcome(1, "HTTPError: 409 Conflict from x")) is not None
    assert TWINE.conflict(task, tmp_path, outcome(1, "HTTPError: 403 Forbidden")) is None


def test_the_synthetic_client_finds_the_wheel_of_the_exact_release() -> None:
    assert find_file(LISTING, "test-package-001", "1.1.0") == (
        "../../packages/test_package_001-1.1.0-py3-none-any.whl#sha256=cc"
    )
    assert find_file(LISTING, "Test_Package.001", "1.0.0") is not None
    assert find_file(LISTING, "test-package-001", "2.0.0") is None


def test_the_synthetic_driver_needs_no_preparation(tmp_path: Path) -> None:
    task = ClientTask("r1", "http", "test-package-001", "1.0.0", "http://127.0.0.1:5/r/r1/simple/")
    command = driver_for("http").prepare(task, tmp_path)
    assert command.call is not None
    assert list(tmp_path.iterdir()) == []
