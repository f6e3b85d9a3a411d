"""Real clients beyond pip through the real proxy and a real pypiserver on loopback: poetry and uv
locks of five-dependency projects, two pip versions, pip resolving corpus dependencies, and
through the CLI a mixed pip + poetry profile, pinned poetry and uv, a pinned pip and a corpus
with dependencies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.runner import execute
from pipstorm.clients.task import ClientResult, ClientTask
from pipstorm.engine.rundir.records import RequestRecord, load_requests
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.target import LocalPypiserver
from pipstorm.packages.cache import cached_corpus
from pipstorm.packages.spec import CorpusSpec
from tests.e2e.conftest import LATENCY_OFF, pipstorm

pytestmark = pytest.mark.e2e

# 12 projects in 3 levels, each above the last depending on one of the next: chains of 2.
SPEC = CorpusSpec(packages=12, dep_fan_out=1, dep_depth=2)
PINS = (
    ("test-package-000", "1.1.0"),  # level 0: its chain is 2 deep
    ("test-package-004", "2.0.0"),
    ("test-package-007", "1.0.0"),
    ("test-package-009", "1.1.0"),
    ("test-package-011", "1.0.0"),
)


@dataclass
class Index:
    url_for: object
    log: Path

    def run(self, run_id: str, client: str, **extra: object) -> ClientResult:
        assert callable(self.url_for)
        project, version = PINS[0]
        task = ClientTask(
            run_id=run_id,
            client=client,
            project=project,
            version=version,
            index_url=self.url_for(run_id),
            **extra,  # type: ignore[arg-type]
        )
        return execute(task, temp_root=None, registry=ProcessRegistry())

    def requests_of(self, run_id: str) -> list[RequestRecord]:
        records, _ = load_requests(self.log)
        return [r for r in records if r.run_id == run_id]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("clients-e2e")
    corpus = cached_corpus(SPEC, root / "cache")
    log = root / "requests.jsonl"
    with (
        LocalPypiserver(corpus.directory) as server,
        RecordingProxy(server.index_url, log, credentials=server.credentials) as proxy,
    ):
        yield Index(url_for=proxy.index_url_for, log=log)


@pytest.mark.parametrize("client", ["poetry", "uv"])
def test_lock_of_five_dependencies_names_the_expected_versions(index: Index, client: str) -> None:
    run_id = f"lock-{client}"
    result = index.run(run_id, client, requirements=PINS[1:])
    # "ok" includes the driver's check: a valid lock file pinning all five releases.
    assert result.outcome == "ok", (result.error, result.stderr_tail)
    assert result.client_version
    requests = index.requests_of(run_id)
    listed = {r.path.rstrip("/").rsplit("/", 1)[-1] for r in requests if r.op == "listing"}
    assert listed >= {p for p, _ in PINS}  # transitive ones come on top
    assert {r.user_agent.split()[0] for r in requests if r.user_agent} == {
        f"{client}/{result.client_version}"
    }
    ranged = [r for r in requests if r.range]
    assert ranged and all(r.status == 206 for r in ranged)  # lazy-wheel reads pass through
    assert all(r.status in (200, 206) for r in requests)
    # every request of the whole module so far is attributed to some run
    everything, skipped = load_requests(index.log)
    assert skipped == 0 and all(r.run_id for r in everything)


def test_two_pip_versions_show_two_user_agents(index: Index) -> None:
    default = index.run("pip-default", "pip")
    pinned = index.run("pip-pinned", "pip", client_version="25.3")
    assert default.outcome == pinned.outcome == "ok", (default.error, pinned.error)
    assert pinned.client_version == "25.3" and default.client_version != "25.3"
    agents = {
        run: {r.user_agent.split()[0] for r in index.requests_of(run) if r.user_agent}
        for run in ("pip-default", "pip-pinned")
    }
    assert agents == {"pip-default": {f"pip/{default.client_version}"}, "pip-pinned": {"pip/25.3"}}


def test_pip_without_no_deps_resolves_corpus_dependencies(index: Index) -> None:
    result = index.run("pip-deps", "pip", resolve_deps=True)
    assert result.outcome == "ok", result.stderr_tail
    graph = SPEC.dependencies()
    first = PINS[0][0]
    chain = {first, *graph[first], *(d2 for d in graph[first] for d2 in graph[d])}
    assert len(chain) == 3
    listed = {
        r.path.rstrip("/").rsplit("/", 1)[-1]
        for r in index.requests_of("pip-deps")
        if r.op == "listing"
    }
    assert listed == chain


def test_a_mixed_pip_and_poetry_profile_reports_per_client_kind(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    proc = pipstorm(
        [
            *("run", "--profile", "light_load", "--duration", "20"),
            *("--mix", "pip=0.5,poetry=0.5", "--results", str(results), "--quiet", "--seed", "2"),
            *LATENCY_OFF,  # the subject is the per-kind report, not this machine's latency
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = list(results.iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    kinds = {k["client"]: k for k in report["client_kinds"]}
    assert set(kinds) == {"pip", "poetry"}
    assert set(report["clients"]["by_client"]) == {"pip", "poetry"}
    assert kinds["poetry"]["requests_per_run"]["listing"] >= 5
    assert kinds["pip"]["requests_per_run"] == {"listing": 1, "download": 1}
    assert all(a.startswith("poetry/") for a in kinds["poetry"]["user_agents"])
    assert "Client kinds" in (run_dir / "report.md").read_text()


PINNED = {"poetry": "2.1.3", "uv": "0.13.8"}  # neither is the default (2.5.1, 0.13.9)


def test_poetry_and_uv_pinned_on_the_command_line_run_and_come_from_elsewhere(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    profile = tmp_path / "locks.toml"
    profile.write_text("clients = 4\nduration_s = 10\nmix = {poetry = 0.5, uv = 0.5}\n")
    results = tmp_path / "results"
    proc = pipstorm(
        [
            *("run", "--profile", str(profile), "--results", str(results), "--quiet"),
            *("--poetry-version", PINNED["poetry"], "--uv-version", PINNED["uv"], *LATENCY_OFF),
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
        timeout=600,  # installs two tool venvs first
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = list(results.iterdir())
    clients = [json.loads(x) for x in (run_dir / "clients.jsonl").read_text().splitlines()]
    assert len(clients) == 4 and {c["outcome"] for c in clients} == {"ok"}, clients
    ran = {(c["client"], c["client_version"]) for c in clients}
    assert ran == set(PINNED.items())
    requests, _ = load_requests(run_dir / "requests.jsonl")
    agents = {r.user_agent.split()[0] for r in requests if r.user_agent}
    assert agents == {f"{kind}/{version}" for kind, version in PINNED.items()}
    # The tools came from this machine's pip configuration before the run began: nothing but
    # corpus projects was ever asked of the index under test.
    started = json.loads((run_dir / "run.json").read_text())["started"]
    tools = Path(e2e_env["PIPSTORM_CACHE_DIR"]) / "tools"
    for kind, version in PINNED.items():
        assert (tools / f"{kind}-{version}" / ".complete").stat().st_mtime < started
    asked = {r.path.split("#")[0].rstrip("/").rsplit("/", 1)[-1] for r in requests}
    assert asked and all(a.startswith(("test-package-", "test_package_")) for a in asked), asked


def test_a_pinned_pip_and_a_dependent_corpus_from_the_command_line(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    """``--pip-version``: the pinned pip runs, and it came from this machine's pip configuration
    before the run, never from the index under test. ``--dep-fan-out``/``--dep-depth``: the
    corpus's projects depend on each other and pip resolves them (no ``--no-deps``)."""
    results = tmp_path / "results"
    proc = pipstorm(
        [
            *("run", "--profile", "light_load", "--duration", "8", "--client", "pip"),
            *("--pip-version", "25.3", "--dep-fan-out", "1", "--dep-depth", "1"),
            *("--results", str(results), "--quiet", *LATENCY_OFF),
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
        timeout=600,  # may fetch the pinned pip first
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = list(results.iterdir())
    clients = [json.loads(x) for x in (run_dir / "clients.jsonl").read_text().splitlines()]
    assert clients and all(c["outcome"] == "ok" for c in clients), clients
    assert {c["client_version"] for c in clients} == {"25.3"}
    requests, _ = load_requests(run_dir / "requests.jsonl")
    assert {r.user_agent.split()[0] for r in requests if r.user_agent} == {"pip/25.3"}
    # The pinned pip was ready before the run began, and nothing but corpus projects was ever
    # asked of the index: pip's own wheel never came from it.
    started = json.loads((run_dir / "run.json").read_text())["started"]
    tools = Path(e2e_env["PIPSTORM_CACHE_DIR"]) / "tools"
    assert (tools / "pip-venv-25.3" / ".complete").stat().st_mtime < started
    asked = {r.path.split("#")[0].rstrip("/").rsplit("/", 1)[-1] for r in requests}
    assert asked and all(a.startswith(("test-package-", "test_package_")) for a in asked), asked
    # Each run listed its project and, pip resolving, every dependency of what it listed.
    graph = CorpusSpec(dep_fan_out=1, dep_depth=1).dependencies()
    listed: dict[str, set[str]] = {}
    for r in requests:
        if r.op == "listing" and r.run_id is not None:
            listed.setdefault(r.run_id, set()).add(r.path.rstrip("/").rsplit("/", 1)[-1])
    assert listed and all(set(graph[p]) <= names for names in listed.values() for p in names)
    assert any(len(names) >= 2 for names in listed.values()), listed  # a dependency was resolved
