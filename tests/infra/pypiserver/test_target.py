"""The local target: real pypiserver processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import psutil
import pytest

from pipstorm.infra.credentials import Credentials, CredentialsError
from pipstorm.infra.pypiserver.target import LocalPypiserver, TargetError
from tests.infra.conftest import Corpus


def get(server: LocalPypiserver, path: str, auth: str | None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": auth} if auth else {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_serves_wheel_with_generated_credentials(
    pypiserver: LocalPypiserver, corpus: Corpus
) -> None:
    auth = pypiserver.credentials.basic_auth_header()
    assert pypiserver.url == f"http://127.0.0.1:{pypiserver.port}/"
    assert pypiserver.index_url == pypiserver.url + "simple/"

    status, _, body = get(pypiserver, "/simple/test-package-000/", auth)
    assert status == 200
    assert corpus.wheel.name.encode() in body

    status, _, body = get(pypiserver, f"/packages/{corpus.wheel.name}", auth)
    assert status == 200
    assert body == corpus.wheel.read_bytes()


def test_rejects_missing_or_wrong_credentials(pypiserver: LocalPypiserver) -> None:
    assert get(pypiserver, "/simple/", None)[0] == 401
    wrong = Credentials(pypiserver.credentials.username, "not-the-password")
    assert get(pypiserver, "/simple/", wrong.basic_auth_header())[0] == 403


def test_unknown_project_is_404_not_a_fallback_redirect(pypiserver: LocalPypiserver) -> None:
    status, headers, _ = get(
        pypiserver, "/simple/no-such-project/", pypiserver.credentials.basic_auth_header()
    )
    assert status == 404
    assert "Location" not in headers


def test_password_not_in_any_cmdline(pypiserver: LocalPypiserver) -> None:
    master = psutil.Process(pypiserver.pid)
    processes = [master, *master.children(recursive=True)]
    assert len(processes) >= 3  # master + 2 workers
    for process in processes:
        cmdline = " ".join(process.cmdline())
        assert pypiserver.credentials.password not in cmdline
        assert pypiserver.credentials.password not in str(process.environ())


def test_stop_leaves_no_process_and_no_temp_dir(corpus: Corpus) -> None:
    server = LocalPypiserver(corpus.directory, workers=3)
    with server:
        master = psutil.Process(server.pid)
        members = [master, *master.children(recursive=True)]
        assert len(members) == 4
        tmpdirs = {Path(member.cwd()) for member in members}
        assert get(server, "/health", None)[0] == 200
    gone, alive = psutil.wait_procs(members, timeout=0)
    assert not alive, f"left behind: {alive}"
    assert len(gone) == 4
    assert all(not tmpdir.exists() for tmpdir in tmpdirs)
    server.stop()  # idempotent


def test_wait_returns_exit_code_after_stop_from_elsewhere(corpus: Corpus) -> None:
    server = LocalPypiserver(corpus.directory, workers=1)
    server.start()
    try:
        psutil.Process(server.pid).terminate()
        assert server.wait() == 0
    finally:
        server.stop()


def test_explicit_port_and_log_path(corpus: Corpus, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "logs" / "pypiserver.log"
    with LocalPypiserver(corpus.directory, port=port, log_path=log) as server:
        assert server.url == f"http://127.0.0.1:{port}/"
    assert "gunicorn" in log.read_text()


def test_port_in_use_fails_with_one_line_error(corpus: Corpus) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LocalPypiserver(corpus.directory, port=port, workers=1)
        with pytest.raises(TargetError) as excinfo:
            server.start()
    message = str(excinfo.value)
    assert "\n" not in message
    assert "in use" in message


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="does not exist"):
        LocalPypiserver(tmp_path / "missing")
    with pytest.raises(TargetError, match="workers"):
        LocalPypiserver(tmp_path, workers=0)
    server = LocalPypiserver(tmp_path)
    with pytest.raises(TargetError, match="not running"):
        _ = server.url


def test_credentials_generate_and_header() -> None:
    first, second = Credentials.generate(), Credentials.generate()
    assert first != second
    assert first.password not in repr(first)
    header = Credentials("user", "pa:ss").basic_auth_header()
    assert header == "Basic dXNlcjpwYTpzcw=="
    with pytest.raises(CredentialsError):
        Credentials("us:er", "x")
    with pytest.raises(CredentialsError):
        Credentials("user", "line\nbreak")
    env = {"U": "alice", "P": "secret"}
    assert Credentials.from_env(env, "U", "P") == Credentials("alice", "secret")
    assert Credentials.from_env({}, "U", "P") is None


def test_root_listing_names_the_projects(pypiserver: LocalPypiserver) -> None:
    status, _, body = get(pypiserver, "/simple/", pypiserver.credentials.basic_auth_header())
    assert status == 200
    assert b"test-package-000" in body
    assert b"big-package" in body


def test_htpasswd_is_private_apr1_and_readable_by_passlib(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib.hash import apr_md5_crypt

    credentials = Credentials.generate()
    path = tmp_path / "htpasswd"
    credentials.write_htpasswd(path)
    assert path.stat().st_mode & 0o777 == 0o600
    username, digest = path.read_text().strip().split(":", 1)
    assert username == credentials.username
    assert digest.startswith("$apr1$")
    assert apr_md5_crypt.verify(credentials.password, digest)
