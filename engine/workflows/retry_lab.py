"""``pipstorm retry-lab``: one client run (per client version) under injected faults, traced.

The quick answer to "what does pip 25.3 do when the index answers 503?": the embedded target,
the recording proxy with the fault rules, then each requested client version once, one after
the other, and the timeline of each. The results folder is a normal one (``run.json``,
``requests.jsonl``, ``clients.jsonl``, ``faults.json``), so ``pipstorm trace`` and
``pipstorm report`` read it too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from pipstorm.clients.drivers.registry import driver_for
from pipstorm.clients.drivers.registry import warm_up as warm_up_driver
from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.runner import execute
from pipstorm.clients.task import ClientTask
from pipstorm.clients.warm.launchers import Launchers
from pipstorm.clients.warm.run import execute_warm, warm_capable
from pipstorm.engine.analysis.trace import RunDirTraces, trace_runs
from pipstorm.engine.errors import UsageError
from pipstorm.engine.report.trace_text import render_run, render_summary
from pipstorm.engine.run.lifecycle import RunParts, RunState, mark_started, open_parts
from pipstorm.engine.run.options import RunOptions
from pipstorm.engine.run.plan.faults import RunFaults
from pipstorm.engine.run.plan.profiles import Profile, check_launch
from pipstorm.engine.run.signals import Terminated
from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.files import make_run_dir
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import ClientRecord
from pipstorm.packages.spec import CorpusSpec

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class LabOptions:
    """What ``pipstorm retry-lab`` can be told."""

    client: str = "pip"
    versions: tuple[str | None, ...] = (None,)  # None: the driver's default version
    faults: tuple[str, ...] = ()
    client_args: tuple[str, ...] = ()
    package: str | None = None  # "name==version"; default: the corpus's first release
    seed: int = 1
    run_timeout_s: float = 120.0
    results_root: Path = Path("results")
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    launch: str = "warm"  # warm where the client has it, else exec (as ``pipstorm run``)


@dataclass(frozen=True)
class LabResult:
    run_dir: Path
    traces: RunDirTraces

    def render(self) -> str:
        """Every run's timeline, then the summary."""
        parts = [render_run(t) for t in self.traces.traces]
        return "\n\n".join([*parts, render_summary(self.traces), f"results: {self.run_dir}"])


def _release(options: LabOptions) -> tuple[str, str]:
    if options.package is None:
        return options.corpus.releases()[0]
    name, sep, version = options.package.partition("==")
    if not sep or not name.strip() or not version.strip():
        raise UsageError(f"--package must look like NAME==VERSION, got {options.package!r}")
    return name.strip(), version.strip()


def run_ids(client: str, versions: Sequence[str | None]) -> list[str]:
    """One run id per version, readable in a trace: ``lab1-pip-25.3``, ``lab2-pip-default``."""
    return [
        _UNSAFE.sub("_", f"lab{i}-{client}-{v or 'default'}")[:64]
        for i, v in enumerate(versions, start=1)
    ]


def run_lab(options: LabOptions, say: Callable[[str], None]) -> LabResult:
    """Run the lab; the components' one-line errors for bad input or an unusable target.

    The lab is a run with one client run per version, played one after the other rather than
    on a schedule: its folder, target, proxy, clients log and time zero come from the run's own
    lifecycle (``pipstorm.engine.run.lifecycle``)."""
    driver_for(options.client)  # UnknownClientError names the known kinds
    check_launch(options.launch)
    project, version = _release(options)
    faults = RunFaults.from_specs(options.faults, seed=options.seed)
    versions = options.versions or (None,)
    ids = run_ids(options.client, versions)
    for pinned in dict.fromkeys(versions):
        warm_up_driver({options.client: pinned})  # tool installs happen before any timing
    run_dir = make_run_dir(options.results_root, f"retry-lab-{options.client}")
    state = RunState(
        meta=_lab_meta(options, ids, project, version, faults), run_dir=run_dir, emit=say
    )
    state.meta.write(run_dir)
    if faults is not None:
        state.faults_path = faults.write_plan(run_dir, dict.fromkeys(ids, options.client))
    try:
        with ExitStack() as stack:
            parts = open_parts(stack, _run_options(options), state)
            launchers = stack.enter_context(Launchers(parts.scratch))
            mark_started(state, time.time())
            registry = ProcessRegistry()
            warm = options.launch == "warm" and warm_capable(options.client)
            state.meta.launch = {
                "mode": options.launch,
                "kinds": {options.client: "warm" if warm else "exec"},
            }
            for run_id, pinned in zip(ids, versions, strict=True):
                shown = pinned or "(default version)"
                say(f"retry-lab: {run_id}: {options.client} {shown}, {project}=={version}")
                task = _task(options, run_id, pinned, project, version, parts)
                _run_one(task, parts, launchers if warm else None, registry)
    except Terminated:
        raise KeyboardInterrupt from None  # stopped cleanly; said as Ctrl-C is (exit 130)
    finally:
        state.meta.ended = time.time()
        state.meta.write(run_dir)
    return LabResult(run_dir=run_dir, traces=trace_runs(RunData.load(run_dir)))


def _lab_meta(
    options: LabOptions, ids: list[str], project: str, version: str, faults: RunFaults | None
) -> RunMeta:
    """run.json of a lab: one planned (and dispatched) run per version, no thresholds."""
    return RunMeta(
        profile={"name": f"retry-lab-{options.client}", "client": options.client},
        seed=options.seed,
        runs_planned=len(ids),
        runs_dispatched=len(ids),
        thresholds={},
        faults=faults.meta() if faults is not None else [],
        clients={"mix": {options.client: 1.0}, "versions": {options.client: None}},
        lab={
            "project": project,
            "version": version,
            "client_args": list(options.client_args),
            "client_versions": list(options.versions or (None,)),
        },
    )


def _run_options(options: LabOptions) -> RunOptions:
    """The lab's parts as a run opens them: the embedded target over the lab's corpus."""
    # A profile of one run of one client: what ``open_parts`` needs of a run is its corpus.
    name = f"retry-lab-{options.client}"
    profile = Profile(name=name, description="retry-lab", clients=1, duration_s=1.0)
    return RunOptions(profile=profile, corpus=options.corpus, launch=options.launch)


def _task(  # noqa: PLR0917 - one lab run's coordinates
    options: LabOptions,
    run_id: str,
    pinned: str | None,
    project: str,
    version: str,
    parts: RunParts,
) -> ClientTask:
    return ClientTask(
        run_id=run_id,
        client=options.client,
        project=project,
        version=version,
        index_url=parts.proxy.index_url_for(run_id),
        timeout_s=options.run_timeout_s,
        client_version=pinned,
        extra_args=options.client_args,
    )


def _run_one(
    task: ClientTask, parts: RunParts, launchers: Launchers | None, registry: ProcessRegistry
) -> None:
    """One client run, now (warm when ``launchers``), into clients.jsonl."""
    result = (
        execute_warm(task, launchers=launchers, temp_root=parts.scratch, registry=registry)
        if launchers is not None
        else execute(task, temp_root=parts.scratch, registry=registry)
    )
    parts.clients_log.write(
        # a lab run is not scheduled: it is due when it launches, never late
        ClientRecord.from_result(
            result,
            project=task.project,
            version=task.version,
            intended=result.launched if result.launched is not None else result.started,
        )
    )
