"""``pipstorm realism``: the same schedule played by the synthetic client and by real clients.

The seed measured an index with a simulated client (three HTTP requests per "pip install").
This plays one profile's schedule twice against one embedded target: first every run as the
synthetic client (``--client http``), then as the real clients (the profile's mix, or
``--client``/``--mix``), and sets the two side by side: requests per client run by operation,
bytes, latency per operation, error rates, CPU per run on the generator. The differences are
what a synthetic test misses (``findings``): requests real clients make that it never does,
requests it makes that real clients do not, and what a run really costs the generator.

Both runs are ordinary pipstorm runs with their own results folders (inside the realism
folder), so each can also be reported on, traced or compared on its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipstorm.clients.drivers.synthetic import KIND as SYNTHETIC_KIND
from pipstorm.clients.drivers.twine import KIND as UPLOAD_KIND
from pipstorm.engine.analysis.realism import Realism, Side, findings, side
from pipstorm.engine.run.execute import RunOptions, RunResult, execute_run
from pipstorm.engine.run.lifecycle import UPLOADS_DIR
from pipstorm.engine.run.plan.client_mix import choose_clients
from pipstorm.engine.run.plan.profiles import Profile, ProfileError
from pipstorm.engine.run.plan.schedule import timeline
from pipstorm.engine.run.progress import to_stderr
from pipstorm.engine.run.target.opening import EMBEDDED, open_target
from pipstorm.engine.rundir.files import TARGET_LOG, make_run_dir
from pipstorm.packages.spec import CorpusSpec


@dataclass(frozen=True)
class RealismOptions:
    """What ``pipstorm realism`` can be told; the real side's clients as in ``pipstorm run``."""

    profile: Profile
    duration_s: float | None = None
    time_scale: float | None = None
    results_root: Path = Path("results")
    seed: int = 1
    workers: int | None = None
    run_timeout_s: float = 120.0
    client: str | None = None
    mix: dict[str, float] | None = None
    client_versions: dict[str, str | None] = field(default_factory=dict)
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    quiet: bool = False
    launch: str | None = None  # the real side's launch mode (--launch), as in ``pipstorm run``


def run_realism(options: RealismOptions, say: Callable[[str], None] | None = None) -> Realism:
    """Play the schedule with the synthetic client, then with the real ones; compare, write
    ``realism.json`` and ``realism.md``. Bad input raises the run's one-line errors first."""
    emit = say or to_stderr
    profile = options.profile
    real_choice = choose_clients(
        profile, client=options.client, mix=options.mix, versions=options.client_versions
    )
    if real_choice.kinds == [SYNTHETIC_KIND]:
        raise ProfileError(
            "realism compares the synthetic client with real ones: name real clients "
            "(--client pip, --mix pip=0.6,poetry=0.4) or a profile that has them"
        )
    timeline(profile, duration_s=options.duration_s, time_scale=options.time_scale)  # checked
    base = RunOptions(
        profile=options.profile,
        duration_s=options.duration_s,
        time_scale=options.time_scale,
        seed=options.seed,
        workers=options.workers,
        run_timeout_s=options.run_timeout_s,
        corpus=options.corpus,
        quiet=options.quiet,
        launch=options.launch,
    )
    root = make_run_dir(options.results_root, f"realism-{profile.name}")
    try:
        with ExitStack() as stack:
            uploads = None
            if UPLOAD_KIND in real_choice.kinds:
                uploads = root / UPLOADS_DIR
                uploads.mkdir()
            target = stack.enter_context(
                open_target(
                    EMBEDDED, corpus=options.corpus, log_path=root / TARGET_LOG, upload_dir=uploads
                )
            )
            emit(f"pipstorm realism: 1/2 the synthetic client ({SYNTHETIC_KIND}), {profile.name}")
            synthetic = execute_run(
                replace(base, client=SYNTHETIC_KIND, results_root=root / "synthetic"),
                emit,
                target=target,
            )
            emit(f"pipstorm realism: 2/2 the real clients ({', '.join(real_choice.kinds)})")
            real = execute_run(
                replace(
                    base,
                    client=options.client,
                    mix=options.mix,
                    client_versions=dict(options.client_versions),
                    results_root=root / "real",
                ),
                emit,
                target=target,
            )
    except BaseException:
        if not any(root.glob("*/*/run.json")):
            shutil.rmtree(root, ignore_errors=True)  # nothing was run: leave no empty folder
        raise
    realism = compare_runs(profile.name, options.seed, root, synthetic, real)
    from pipstorm.engine.report.realism import write_realism

    write_realism(realism)
    return realism


def compare_runs(
    profile: str, seed: int, root: Path, synthetic: RunResult, real: RunResult
) -> Realism:
    """The two runs side by side, with what the synthetic one misses."""
    left = _side("synthetic", synthetic)
    right = _side("real", real)
    return Realism(
        profile=profile,
        seed=seed,
        dir=root,
        synthetic=left,
        real=right,
        findings=tuple(findings(left, right)),
    )


def _side(label: str, result: RunResult) -> Side:
    report = result.report
    return side(
        label, report.data, report.stats, report.client_kinds, interrupted=result.interrupted
    )
