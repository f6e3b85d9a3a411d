"""pipstorm as a pytest plugin (entry point ``pytest11``): load tests as ordinary tests.

    def test_index_survives_light_load(pipstorm_run):
        assert pipstorm_run("light_load", duration=60).passed

Fixtures: ``pipstorm_corpus`` (the synthetic corpus, built once per machine), ``pipstorm_target``
(one index for the whole session: the embedded pypiserver, ``--pipstorm-index-url``, or
``--pipstorm-target terraform:DIR`` for a deployed AWS stack, whose CloudWatch series each run's
report then shows) and
``pipstorm_run(profile, **overrides)`` (one run against that target, judged). ``--keep-after``
leaves the embedded target running after the session and prints its URL, like the seed's flag.

A run whose verdict is inconclusive (the load generator was the bottleneck, so the profile was
not played: ``pipstorm.engine.analysis.verdict``) skips the test with the reason: a user's suite
is not red for the machine it ran on. ``--pipstorm-strict`` fails such a test instead;
``pipstorm_run(..., allow_generator_bound=True)`` keeps the PASS/FAIL with the warning.

The plugin is loaded by every pytest session of an environment where pipstorm is installed, so
importing it must cost nothing: only pytest and the standard library here; the engine is
imported when a fixture is used. Every name it adds starts with ``pipstorm``, except the seed's
``--keep-after``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pipstorm.engine.report.model import Report
    from pipstorm.engine.run.execute import RunOptions, RunResult
    from pipstorm.engine.run.target.opening import Target
    from pipstorm.packages.cache import Corpus

#: How long ``--keep-after`` waits for the detached server to say its URL.
KEEP_START_TIMEOUT_S = 60.0
_KEPT = pytest.StashKey[str]()

#: ``pipstorm_run`` keyword -> ``RunOptions`` field (the CLI's names; the fields' own work too).
_ALIASES = {"duration": "duration_s", "run_timeout": "run_timeout_s", "thresholds": "threshold"}
_ALLOWED = frozenset(
    {
        "duration_s",
        "time_scale",
        "seed",
        "workers",
        "run_timeout_s",
        "quiet",
        "proxy_priority",
        "allow_generator_bound",
        "abort_on_fail",
    }
)
#: ``--pipstorm-junit``: the testsuites of the session's runs so far, in run order.
_JUNIT = pytest.StashKey[list[Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's options, in a ``pipstorm`` group of ``pytest --help``."""
    group = parser.getgroup("pipstorm", "pipstorm load tests")
    group.addoption(
        "--pipstorm-index-url",
        default=None,
        help="Index to load instead of the embedded pypiserver "
        "(credentials from PYPI_USERNAME/PYPI_PASSWORD).",
    )
    group.addoption(
        "--pipstorm-target",
        default=None,
        help="Index to load: terraform:DIR (a deployed Terraform root's outputs), url:URL or "
        "embedded (the default).",
    )
    group.addoption(
        "--pipstorm-aws-role-arn",
        default=None,
        help="IAM role to assume for reading CloudWatch (default: AWS_ROLE_ARN).",
    )
    group.addoption(
        "--pipstorm-allow-remote-target",
        action="store_true",
        default=False,
        help="Allow a --pipstorm-index-url or --pipstorm-target that is not a loopback address.",
    )
    group.addoption(
        "--pipstorm-results",
        default=None,
        help="Folder for the runs' results (default: each test's tmp_path).",
    )
    group.addoption(
        "--pipstorm-strict",
        action="store_true",
        default=False,
        help="Fail a test whose run is inconclusive (the load generator was the bottleneck) "
        "instead of skipping it.",
    )
    group.addoption(
        "--pipstorm-junit",
        default=None,
        metavar="FILE",
        help="Write every pipstorm_run's verdict to FILE as JUnit XML (one testsuite per run, "
        "one testcase per threshold), rewritten after each run.",
    )
    group.addoption(
        "--keep-after",
        action="store_true",
        default=False,
        help="Keep the embedded pipstorm target running after the session; print its URL.",
    )


@dataclass(frozen=True)
class PipstormResult:
    """One run's outcome: ``passed`` is what a test asserts; ``report`` is ``report.json``."""

    run_dir: Path
    verdict: str
    report: Mapping[str, Any] = field(repr=False)
    interrupted: bool = False
    summary: str = field(default="", repr=False)
    reason: str = ""  # why the verdict is what it is (report.json's decision.reason)

    @property
    def passed(self) -> bool:
        """Every threshold passed and the run was not interrupted."""
        return self.verdict == "pass" and not self.interrupted

    @property
    def failed_thresholds(self) -> list[str]:
        """``key: measured (limit)`` of each threshold that failed."""
        failed = []
        for t in self.report.get("thresholds", ()):
            if isinstance(t, Mapping) and not t.get("passed", True):
                measured = t.get("measured")
                shown = f"{measured:.3f}" if isinstance(measured, float) else measured
                failed.append(f"{t.get('key')}: {shown} (limit {t.get('limit')})")
        return failed

    def __repr__(self) -> str:
        # What pytest shows under a failed `assert result.passed`: why, and where to look.
        generator = self.report.get("generator")
        saturated = isinstance(generator, Mapping) and bool(generator.get("saturated"))
        return (
            f"PipstormResult(verdict={self.verdict!r}, failed={self.failed_thresholds}, "
            f"interrupted={self.interrupted}, generator_saturated={saturated}, "
            f"run_dir='{self.run_dir}')"
        )


def run_options(profile: str, overrides: Mapping[str, Any], results_root: Path) -> RunOptions:
    """``pipstorm_run``'s keywords as ``RunOptions``; an unknown keyword is a usage error."""
    from pipstorm.engine.run.execute import RunOptions
    from pipstorm.engine.run.plan.profiles import load_profile

    values: dict[str, Any] = {}
    thresholds: list[str] = []
    for key, value in overrides.items():
        name = _ALIASES.get(key, key)
        if name == "threshold":
            if not isinstance(value, Mapping):
                raise pytest.UsageError("pipstorm_run: thresholds must be a {KEY: limit} dict")
            thresholds += [f"{k}={v}" for k, v in value.items()]
        elif name in _ALLOWED:
            values[name] = value
        else:
            known = ", ".join(sorted([*_ALIASES, *_ALLOWED]))
            raise pytest.UsageError(f"pipstorm_run: unknown option {key!r} (known: {known})")
    return RunOptions(
        profile=load_profile(profile),
        results_root=results_root,
        threshold_overrides=tuple(thresholds),
        **values,
    )


@pytest.fixture(scope="session")
def pipstorm_corpus() -> Corpus:
    """The default synthetic corpus (100 projects x 3 versions), built once per machine."""
    from pipstorm.packages.cache import cached_corpus
    from pipstorm.packages.spec import CorpusSpec

    return cached_corpus(CorpusSpec())


@pytest.fixture(scope="session")
def pipstorm_target(
    request: pytest.FixtureRequest,
    pipstorm_corpus: Corpus,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Target]:
    """The index every ``pipstorm_run`` of the session loads: ``--pipstorm-index-url``, or the
    embedded pypiserver serving ``pipstorm_corpus`` (kept up with ``--keep-after``)."""
    from pipstorm.engine.run.target.opening import check_target, open_target, parse_target

    config = request.config
    spec = parse_target(
        config.getoption("--pipstorm-target"), config.getoption("--pipstorm-index-url")
    )
    if spec.embedded and config.getoption("--keep-after"):
        # Its log lives in pytest's own temp tree, which pytest prunes (it keeps the last 3).
        yield _kept_target(config, pipstorm_corpus, tmp_path_factory.mktemp("kept-target"))
        return
    allow_remote = bool(config.getoption("--pipstorm-allow-remote-target"))
    checked = check_target(spec, allow_remote=allow_remote)
    with open_target(checked, corpus=pipstorm_corpus.spec, log_path=None) as target:
        yield target


@pytest.fixture
def pipstorm_run(
    request: pytest.FixtureRequest, pipstorm_target: Target, tmp_path: Path
) -> Callable[..., PipstormResult]:
    """``pipstorm_run(profile, duration=..., time_scale=..., thresholds={KEY: limit}, seed=...,
    workers=..., run_timeout=..., allow_generator_bound=...)``: one run against
    ``pipstorm_target``, judged; an inconclusive run skips the test (``--pipstorm-strict``:
    fails it)."""
    from pipstorm.engine.report.ci.step_summary import append_report
    from pipstorm.engine.run.execute import execute_run

    option = request.config.getoption("--pipstorm-results")
    strict = bool(request.config.getoption("--pipstorm-strict"))
    results_root = Path(option) if option else tmp_path / "pipstorm"

    def run(profile: str, **overrides: Any) -> PipstormResult:  # noqa: ANN401 - RunOptions values
        options = dataclasses.replace(
            run_options(profile, overrides, results_root),
            aws_role_arn=request.config.getoption("--pipstorm-aws-role-arn"),
        )
        # print: pytest captures it and shows it with the test's failure.
        result = execute_run(options, say=print, target=pipstorm_target)
        append_report(result.report, print)  # GitHub's job summary, when GITHUB_STEP_SUMMARY
        junit = request.config.getoption("--pipstorm-junit")
        if junit:  # before judging: an inconclusive run skips the test but is in the file
            _add_junit_suite(request, Path(junit), result.report)
        return judged(result, strict=strict)

    return run


def judged(result: RunResult, *, strict: bool) -> PipstormResult:
    """A run as a test sees it: an inconclusive verdict skips the test with the reason
    (``strict``: fails it), anything else is returned for the test to assert on."""
    decision = result.report.decision
    if decision.verdict == "inconclusive" and not result.interrupted:
        text = f"pipstorm: INCONCLUSIVE: {decision.reason} ({result.run_dir})"
        if strict:
            pytest.fail(text, pytrace=False)
        pytest.skip(text)
    return PipstormResult(
        run_dir=result.run_dir,
        verdict=decision.verdict,
        report=result.report.to_dict(),
        interrupted=result.interrupted,
        reason=decision.reason,
    )


def _add_junit_suite(request: pytest.FixtureRequest, path: Path, report: Report) -> None:
    """Add this run's testsuite (named after the test) and rewrite ``--pipstorm-junit``."""
    from pipstorm.engine.report.ci.junit import testsuite, write_junit

    suites = request.config.stash.setdefault(_JUNIT, [])
    name = f"pipstorm {report.profile_name} ({request.node.nodeid})"
    suites.append(testsuite(report, name))
    write_junit(path, suites)


def _kept_target(config: pytest.Config, corpus: Corpus, folder: Path) -> Target:
    """``pipstorm serve`` in a session of its own, so it outlives this pytest process."""
    from pipstorm.engine.run.target.opening import Target, preflight
    from pipstorm.infra.credentials import Credentials

    credentials = Credentials.generate()
    log = folder / "serve.log"
    env = {
        **os.environ,
        "PYPI_USERNAME": credentials.username,
        "PYPI_PASSWORD": credentials.password,
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipstorm", "serve", "--corpus", str(corpus.directory)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = _wait_for_url(proc, log)
    index_url = url if url.endswith("/simple/") else url.rstrip("/") + "/simple/"
    try:
        preflight(index_url, credentials, corpus.spec.project_names()[0])
    except Exception:
        os.killpg(proc.pid, signal.SIGINT)
        raise
    config.stash[_KEPT] = (
        f"pipstorm: the embedded target stays up at {index_url} (pid {proc.pid}; "
        f"credentials: see {log}); stop it with: kill -INT {proc.pid}"
    )
    return Target(
        kind="embedded",
        index_url=index_url,
        credentials=credentials,
        corpus=corpus.spec,
        server_pid=proc.pid,
    )


def _wait_for_url(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + KEEP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("serving ") and " at " in line:
                return line.rsplit(" at ", 1)[1].strip()
        if proc.poll() is not None:
            raise pytest.UsageError(f"pipstorm: the kept target exited; see {log}")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    raise pytest.UsageError(f"pipstorm: the kept target did not start; see {log}")


def pytest_terminal_summary(terminalreporter: Any) -> None:  # noqa: ANN401 - pytest's reporter
    """Say where the ``--keep-after`` target is, last, where it is seen."""
    message = terminalreporter.config.stash.get(_KEPT, None)
    if message:
        terminalreporter.write_sep("-", "pipstorm")
        terminalreporter.write_line(message)
