"""``pipstorm replay`` on real clients' traffic: the grouping rules checked on what real pip,
poetry, uv and twine send through the proxy (written as ALB and gunicorn lines), a replay of
such a log by the CLI with pip 25.3 and poetry 2.1.3 (the incident's versions), and one against
a remote index that must hold the log's projects."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.runner import execute
from pipstorm.clients.task import ClientResult, ClientTask
from pipstorm.engine.run.replay.group import group_runs, resolve_pins
from pipstorm.engine.run.replay.logline import parse_line
from pipstorm.engine.rundir.records import RequestRecord, load_requests
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from tests.e2e.conftest import LATENCY_OFF, pipstorm
from tests.engine.report.ci.test_junit import check_junit
from tests.engine.run.replay.lines import APACHE_COMBINED, as_alb, as_combined

pytestmark = pytest.mark.e2e

# run id -> (client, client version, host, pins); pip-a and pip-b: one CI host, one after the
# other, the second asking for the same project's listing again.
RUNS: dict[str, tuple[str, str | None, str, tuple[tuple[str, str], ...]]] = {
    "pip-a": ("pip", "25.3", "10.0.0.5", (("test-package-001", "1.1.0"),)),
    "pip-b": ("pip", "25.3", "10.0.0.5", (("test-package-001", "2.0.0"),)),
    "poetry": (
        "poetry",
        "2.1.3",
        "10.0.0.6",
        (
            ("test-package-002", "1.0.0"),
            ("test-package-003", "2.0.0"),
            ("test-package-004", "1.1.0"),
        ),
    ),
    "uv": ("uv", None, "10.0.0.7", (("test-package-001", "1.0.0"), ("test-package-005", "2.0.0"))),
    # an upload: its release is not logged, the replay uploads one of the first logged release
    "twine": ("twine", None, "10.0.0.8", (("test-package-001", "1.1.0"),)),
}


@dataclass(frozen=True)
class Capture:
    results: dict[str, ClientResult]
    records: list[RequestRecord]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    root = tmp_path_factory.mktemp("replay-capture")
    corpus = cached_corpus(CorpusSpec(packages=6), root / "cache")
    log = root / "requests.jsonl"
    results: dict[str, ClientResult] = {}
    (root / "uploads").mkdir()
    with (
        LocalPypiserver(corpus.directory, upload_dir=root / "uploads") as server,
        RecordingProxy(server.index_url, log, credentials=server.credentials) as proxy,
    ):
        for run_id, (client, version, _, pins) in RUNS.items():
            (project, release), *more = pins
            task = ClientTask(
                run_id=run_id,
                client=client,
                project=project,
                version=release,
                index_url=proxy.index_url_for(run_id),
                requirements=tuple(more),
                client_version=version,
            )
            results[run_id] = execute(task, temp_root=None, registry=ProcessRegistry())
    records, skipped = load_requests(log)
    assert skipped == 0
    yield Capture(results, records)


@pytest.mark.parametrize("write", [as_alb, as_combined], ids=["alb", "combined"])
def test_real_clients_requests_group_into_the_runs_that_made_them(
    capture: Capture, write: object
) -> None:
    assert callable(write)
    for run_id, result in capture.results.items():
        assert result.outcome == "ok", (run_id, result.error, result.stderr_tail)
    lines = [write(r, RUNS[r.run_id or ""][2]) for r in capture.records]
    lines.append(APACHE_COMBINED)  # a browser: unexplained
    parsed = [parse_line(line) for line in lines]
    requests = [p for p in parsed if p is not None]
    assert len(requests) == len(lines)
    by_request = {
        id(req): rec.run_id or "" for req, rec in zip(requests, capture.records, strict=False)
    }
    runs = group_runs(requests)
    made = [r for r in runs if r.kind is not None]
    assert len(runs) - len(made) == 1  # the browser
    assert not resolve_pins(made, default_project=("test-package-001", "1.1.0"))
    # each grouped run is exactly one client run's requests, and each client run one group
    owners = [{by_request[id(q)] for q in run.requests} for run in made]
    assert sorted(min(o) for o in owners) == sorted(RUNS) and all(len(o) == 1 for o in owners)
    for run, owner in zip(made, owners, strict=True):
        (run_id,) = owner
        client, _, _, pins = RUNS[run_id]
        assert (run.kind, run.version) == (client, capture.results[run_id].client_version)
        assert sorted(run.pins) == sorted(pins)


def test_replay_of_a_pip_and_poetry_log_plays_each_run_and_compares(
    capture: Capture, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    # 20 runs over 2 minutes of log: 14 pip (12 on 25.3, 2 on 26.3; one download each), 6
    # poetry 2.1.3 locks, each from its own CI host; played 8 times faster.
    pip = [r for r in capture.records if r.run_id == "pip-a"]
    poetry = [r for r in capture.records if r.run_id == "poetry"]
    lines = []
    for i in range(20):
        records = poetry if i % 10 in (3, 6, 9) else pip
        shift = 1.7e9 + i * 6.0 - records[0].ts
        run = [as_alb(r, f"10.1.0.{i}", shift_s=shift) for r in records]
        if i in (0, 10):  # two hosts still on pip 26.3: each run plays its own version
            run = [line.replace('"pip/25.3 ', '"pip/26.3 ') for line in run]
        lines += run
    lines += ["an unreadable line", as_alb(pip[0], "10.9.9.9", shift_s=1.7e9 - pip[0].ts)]
    lines[-1] = lines[-1].replace("pip/25.3", "ELB-HealthChecker/2.0 pip/25.3")
    log = tmp_path / "alb.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = tmp_path / "results"
    proc = pipstorm(
        [
            *("replay", str(log), "--speed", "8", "--results", str(results), "--quiet"),
            *(*LATENCY_OFF, "--junit", str(tmp_path / "junit.xml"), "--dashboard"),
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
        timeout=600,  # installs pip 25.3 and poetry 2.1.3 into the test's cache first
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 of" in proc.stderr and "unreadable" in proc.stderr
    (run_dir,) = list(results.iterdir())
    clients = [json.loads(x) for x in (run_dir / "clients.jsonl").read_text().splitlines()]
    ran = sorted((c["client"], c["client_version"], c["outcome"]) for c in clients)
    pips = [("pip", "25.3", "ok")] * 12 + [("pip", "26.3", "ok")] * 2
    assert ran == sorted(pips + [("poetry", "2.1.3", "ok")] * 6)
    replayed, _ = load_requests(run_dir / "requests.jsonl")
    agents = {r.user_agent.split()[0] for r in replayed if r.user_agent}
    assert agents == {"pip/25.3", "pip/26.3", "poetry/2.1.3"}
    report = json.loads((run_dir / "replay.json").read_text())
    assert (report["log_runs"], report["replay_runs"], report["speed"]) == (20, 20, 8.0)
    ops = {row["op"]: row for row in report["operations"]}
    logged = len(pip) * 14 + len(poetry) * 6 + 1  # the original has the health check too
    assert sum(row["log_requests"] for row in ops.values()) == logged
    # the same clients asking for the same releases make the same listings and downloads (the
    # health check's listing is the original's only)
    assert ops["listing"]["replay_requests"] == ops["listing"]["log_requests"] - 1
    assert ops["download"]["replay_requests"] == ops["download"]["log_requests"]
    # the log's 2 minutes; a replayed run lasts as long as it takes (x8 on the log's clock),
    # so the replay side may run over into a third
    minutes = report["minutes"]
    assert [m["minute"] for m in minutes[:2]] == [0, 1]
    assert sum(m["log_requests"] for m in minutes[:2]) == logged
    assert sum(m["replay_requests"] for m in minutes) == len(replayed)
    assert report["facts"]["unexplained_requests"] == 1
    assert report["facts"]["unreadable_lines"] == 1
    assert report["onset_s"]["count"] == 20
    assert "## Per minute" in (run_dir / "replay.md").read_text()
    # The live page's URL comes first; the verdict goes to CI as JUnit (docs/ci.md).
    assert re.match(r"pipstorm: dashboard at http://127\.0\.0\.1:\d+/\n", proc.stderr)
    suites = check_junit(tmp_path / "junit.xml")
    assert [s.get("name") for s in suites] == ["pipstorm replay"]


def test_against_a_remote_index_every_logged_project_is_checked_first(
    capture: Capture, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    pip = [r for r in capture.records if r.run_id == "pip-a"]  # test-package-001 1.1.0
    renamed = [  # the same run, asking for a project the remote index does not have
        RequestRecord(**{**r.to_json(), "path": r.path.replace("001", "077")})  # type: ignore[arg-type]
        for r in pip
    ]
    corpus = cached_corpus(CorpusSpec(packages=6), Path(e2e_env["PIPSTORM_CACHE_DIR"]))
    with LocalPypiserver(corpus.directory) as server:
        creds = server.credentials
        env = {**e2e_env, "PYPI_USERNAME": creds.username, "PYPI_PASSWORD": creds.password}
        for name, records, code in (("present", pip, 0), ("absent", renamed, 2)):
            log = tmp_path / f"{name}.log"
            log.write_text("\n".join(as_alb(r, "10.0.0.5") for r in records) + "\n", "utf-8")
            results = tmp_path / name
            proc = pipstorm(
                [
                    *("replay", str(log), "--index-url", server.index_url),
                    *("--results", str(results), "--quiet", *LATENCY_OFF),
                ],
                env,
                tmpdir=tmp_path / "tmp",
            )
            assert proc.returncode == code, proc.stderr
            assert creds.password not in proc.stderr + proc.stdout
            if code == 2:
                assert proc.stderr.splitlines()[-1].startswith("ERROR: the index has no project")
                assert "test-package-077" in proc.stderr
                assert not results.exists() or not any(results.iterdir())
                continue
            (run_dir,) = list(results.iterdir())
            (client,) = [
                json.loads(x) for x in (run_dir / "clients.jsonl").read_text().splitlines()
            ]
            assert (client["client_version"], client["outcome"]) == ("25.3", "ok")
            assert json.loads((run_dir / "run.json").read_text())["target"]["kind"] == "remote"
