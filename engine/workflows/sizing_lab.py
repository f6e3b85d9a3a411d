"""``pipstorm sizing-lab``: one profile against each sizing in turn, compared, with the reason.

The seed's users learnt sizing by deploying to AWS twice and paying for each try. The lab plays
the same profile against a fresh embedded target per sizing (``pipstorm.infra.pypiserver.sizing``:
the seed's presets and their knobs, confined by cgroups), one ordinary pipstorm run each in the
lab's folder, and prints the ``compare`` table of the runs with, for every failing sizing, what held
it back (``pipstorm.engine.analysis.target.sizing``): CPU-throttled, OOM-killed or died,
auth-hash-bound, hash-bound, or generator-bound. Each sizing's verdict is its run's, from the one
rule every verdict comes from (``pipstorm.engine.analysis.verdict``): a generator-bound run is
``inconclusive`` (it says nothing about the sizing) unless ``--allow-generator-bound``.

A size is a preset name, optionally with knobs after slashes, so one lab can set a hash against
another at the same sizing: ``optimized,optimized/auth=bcrypt:12``. The lab's knobs (``--auth``
etc.) apply to every size first, at full size; ``--scale K`` then divides every sizing's capacity
and the profile's clients by K (``pipstorm.engine.workflows.published``), and where the seed
module published figures for the profile and preset, the lab prints its prediction beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipstorm.engine.analysis.target.sizing import Diagnosis
from pipstorm.engine.errors import UsageError
from pipstorm.engine.report.compare import load_run, render
from pipstorm.engine.run.execute import RunOptions, RunResult, execute_run
from pipstorm.engine.run.live.dashboard import Dashboard
from pipstorm.engine.run.plan.schedule import timeline
from pipstorm.engine.run.progress import to_stderr
from pipstorm.engine.rundir.files import make_run_dir, write_json_atomic, write_text_atomic
from pipstorm.engine.workflows.published import (
    Prediction,
    fitting_scale,
    predict,
    scale_profile,
)
from pipstorm.infra.pypiserver.cgroups import host_cores
from pipstorm.infra.pypiserver.sizing import KNOB_NAMES, Sizing, preset
from pipstorm.infra.pypiserver.target import TargetError
from pipstorm.packages.index_check import IndexCheckError

DEFAULT_SIZES = ("baseline", "optimized", "heavy")
LAB_JSON = "sizing-lab.json"
LAB_MD = "sizing-lab.md"


@dataclass(frozen=True)
class SizingLabOptions:
    """What ``pipstorm sizing-lab`` can be told; ``run`` holds what every run shares."""

    run: RunOptions
    sizes: tuple[str, ...] = DEFAULT_SIZES
    knobs: Mapping[str, Any] = field(default_factory=dict)  # applied to every size
    # --scale K: 1/K of the clients against 1/K of each sizing's capacity; None: the smallest K
    # that leaves the clients a core (``fitting_scale``), said in one line when it is not 1.
    scale: int | None = None
    dashboard: Dashboard | None = None  # --dashboard: one page that follows each sizing's run


@dataclass(frozen=True)
class SizingOutcome:
    """One sizing's run (its verdict and why it failed), or why its server never served."""

    sizing: Sizing
    result: RunResult | None
    start_error: str | None = None  # the server died or was refused before any load
    prediction: Prediction | None = None  # beside the module's published figures, if any

    @property
    def diagnosis(self) -> tuple[Diagnosis, ...]:
        """The run's diagnosis; a server that died while starting is its own cause."""
        if self.result is None:
            return (Diagnosis("died", f"before any load: {self.start_error}"),)
        return self.result.report.diagnosis

    @property
    def verdict(self) -> str:
        """``pass``, ``fail`` or ``inconclusive``: the run's verdict
        (``pipstorm.engine.analysis.verdict``); ``fail`` for a server that never served."""
        if self.result is None:
            return "fail"
        return self.result.report.verdict

    def diagnosis_line(self) -> str:
        """``baseline: FAIL: CPU-throttled (throttled in 63 % ...)``."""
        causes = "; ".join(f"{d.cause} ({d.detail})" for d in self.diagnosis)
        return f"{self.sizing.name}: {self.verdict.upper()}" + (f": {causes}" if causes else "")

    def prediction_lines(self) -> list[str]:
        """``validated at 1/8: p95, all requests 12.1 s (published 14.0 s)`` and the x2 check."""
        if self.prediction is None:
            return []
        scale = f" at 1/{self.prediction.scale}" if self.prediction.scale > 1 else ""
        rows = [
            f"{self.sizing.name}{scale}: {name} {ours} (published {theirs})"
            for name, ours, theirs in self.prediction.rows()
        ]
        verdict = "lands" if self.prediction.lands else "does NOT land"
        void = " (INCONCLUSIVE: the generator was the bottleneck, so this says nothing)" * (
            self.verdict == "inconclusive"
        )
        return [
            *rows,
            f"{self.sizing.name}{scale}: {verdict} within x2 of the published p95{void}",
        ]


@dataclass(frozen=True)
class SizingLab:
    """The lab's folder, each sizing's outcome and the comparison table."""

    lab_dir: Path
    outcomes: tuple[SizingOutcome, ...]
    table: str
    interrupted: bool
    scale: int = 1

    def render(self) -> str:
        """The comparison, then one line per sizing (pass, fail with its causes, or
        inconclusive)."""
        ran = [o for o in self.outcomes if o.result is not None]
        legend = [f"{chr(ord('A') + i)}: {o.sizing.label()}" for i, o in enumerate(ran)]
        return "\n".join(
            [
                self.table,
                "",
                *legend,
                "",
                *(o.diagnosis_line() for o in self.outcomes),
                *(line for o in self.outcomes for line in o.prediction_lines()),
                f"lab: {self.lab_dir}",
            ]
        )

    def to_json(self) -> dict[str, Any]:
        """``sizing-lab.json``: each sizing, its run folder, verdict and diagnosis."""
        return {
            "schema": 1,
            "sizings": [
                {
                    "sizing": o.sizing.as_record(),
                    "run_dir": None if o.result is None else str(o.result.run_dir),
                    "verdict": o.verdict,
                    "diagnosis": [d.to_dict() for d in o.diagnosis],
                    "scale": o.sizing.scale,
                    "published": None if o.prediction is None else o.prediction.published.to_dict(),
                    "prediction": None if o.prediction is None else o.prediction.to_dict(),
                }
                for o in self.outcomes
            ],
            "scale": self.scale,
            "interrupted": self.interrupted,
        }


def parse_size(text: str, knobs: Mapping[str, Any]) -> Sizing:
    """``optimized/auth=bcrypt:12/cpus=1``: a preset, the lab's knobs, then the size's own."""
    name, *pairs = text.strip().split("/")
    own: dict[str, Any] = dict(knobs)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in KNOB_NAMES:
            raise UsageError(
                f"--sizes: {pair!r} in {text!r} is not KNOB=VALUE "
                f"(knobs: {', '.join(k.replace('_', '-') for k in KNOB_NAMES)})"
            )
        own[key] = _knob_value(key, value.strip(), text)
    sizing = preset(name.strip()).with_knobs(**own)
    if pairs:  # name the size as written, so two sizes of one preset stay apart
        sizing = replace(sizing, name=text.strip())
    return sizing


def _knob_value(key: str, value: str, text: str) -> Any:  # noqa: ANN401 - a knob's own type
    try:
        return float(value) if key == "cpus" else int(value) if key == "workers" else value
    except ValueError:
        raise UsageError(f"--sizes: {key} must be a number in {text!r}") from None


def run_sizing_lab(
    options: SizingLabOptions, say: Callable[[str], None] | None = None
) -> SizingLab:
    """Run the profile once per size (fresh target each), compare, write the lab's summary."""
    emit = say or to_stderr
    if options.run.target.index_url is not None:
        raise UsageError("sizing-lab sizes the embedded target: it takes no --index-url")
    # All checked first; the knobs apply at full size, then the whole sizing is scaled.
    full = [parse_size(text, options.knobs) for text in options.sizes]
    if not full:
        raise UsageError("--sizes names no sizing")
    scale = _lab_scale(full, options.scale, emit)
    sizings = [sizing.scaled(scale) for sizing in full]
    profile = scale_profile(options.run.profile, scale)
    timeline(profile, duration_s=options.run.duration_s, time_scale=options.run.time_scale)
    lab_dir = make_run_dir(options.run.results_root, f"sizing-lab-{profile.name}")
    outcomes: list[SizingOutcome] = []
    interrupted = False
    for sizing in sizings:
        emit(f"sizing-lab: {sizing.label()}")
        try:
            result = execute_run(
                replace(
                    options.run,
                    sizing=sizing,
                    probe_listing=True,
                    results_root=lab_dir,
                    profile=profile,
                ),
                emit,
                dashboard=options.dashboard,
            )
        # This sizing's server died starting (OOM), or started but could not answer the
        # corpus check before any load (a 128 MiB server thrashing): the next sizing may do.
        except (TargetError, IndexCheckError) as exc:
            emit(f"sizing-lab: {sizing.name}: {exc}")
            outcomes.append(SizingOutcome(sizing, None, start_error=str(exc)))
            continue
        prediction = predict(
            options.run.profile.name, sizing.name, scale, result.report.stats.requests
        )
        outcomes.append(SizingOutcome(sizing, result, prediction=prediction))
        if result.interrupted:
            interrupted = True
            break
    table = _table(outcomes)
    lab = SizingLab(lab_dir, tuple(outcomes), table, interrupted, scale)
    write_json_atomic(lab_dir / LAB_JSON, lab.to_json())
    write_text_atomic(lab_dir / LAB_MD, _markdown(lab, outcomes))
    return lab


def _lab_scale(sizings: Sequence[Sizing], asked: int | None, emit: Callable[[str], None]) -> int:
    """``--scale`` as given, or the smallest K that leaves this machine's clients a core.

    A sizing of every core here leaves the clients none: its server and the clients took CPU from
    each other (optimized at 2 vCPU on 2 cores got 110-180 % in a burst's seconds, and the runs
    were generator-bound, 2026-12-06). One K for the whole lab, so its rows compare.
    """
    cores = host_cores()
    widest = max(sizings, key=lambda s: s.cpus or 0.0)
    fit = fitting_scale(widest.cpus, cores)
    if asked is None:
        if fit > 1:
            emit(
                f"sizing-lab: {widest.name}'s {widest.cpus:g} vCPUs would leave this machine's "
                f"{cores} cores none for the clients: playing 1/{fit} of the clients against "
                f"1/{fit} of each sizing (--scale 1 forces full size)"
            )
        return fit
    if asked < fit:
        emit(
            f"sizing-lab: at 1/{asked}, {widest.name} has {(widest.cpus or 0) / asked:g} vCPUs of "
            f"this machine's {cores} cores: its server and the clients will take CPU from each "
            f"other (--scale {fit} leaves the clients a core)"
        )
    return asked


def _ran(outcomes: Sequence[SizingOutcome]) -> list[RunResult]:
    return [o.result for o in outcomes if o.result is not None]


def _table(outcomes: Sequence[SizingOutcome], fmt: str = "table") -> str:
    runs = [load_run(result.run_dir) for result in _ran(outcomes)]
    return render(runs, fmt) if runs else "No sizing served any load."


def _markdown(lab: SizingLab, outcomes: Sequence[SizingOutcome]) -> str:
    lines = [
        "# pipstorm sizing lab",
        "",
        *(f"- **{o.sizing.name}**: {o.sizing.label()}" for o in outcomes),
        "",
        _table(outcomes, "md"),
        "## Diagnosis",
        "",
        *(f"- {o.diagnosis_line()}" for o in outcomes),
    ]
    lines += _prediction_markdown(outcomes)
    if lab.interrupted:
        lines += ["", "The lab was interrupted: the sizings after the last one shown did not run."]
    return "\n".join(lines) + "\n"


def _prediction_markdown(outcomes: Sequence[SizingOutcome]) -> list[str]:
    """Per sizing with published figures: the lab's prediction beside them, and the x2 check."""
    lines: list[str] = []
    for outcome in outcomes:
        prediction = outcome.prediction
        if prediction is None:
            continue
        scale = f" at 1/{prediction.scale}" if prediction.scale > 1 else ""
        lines += [
            "",
            f"## {outcome.sizing.name}{scale}: prediction beside the published figures",
            "",
            "| figure | predicted here | published |",
            "|---|---|---|",
            *(f"| {name} | {ours} | {theirs} |" for name, ours, theirs in prediction.rows()),
            "",
            f"Within x2 of the published p95 and under 1 % errors: "
            f"{'yes' if prediction.lands else 'no'}"
            + (
                " (inconclusive: the generator was the bottleneck)"
                if outcome.verdict == "inconclusive"
                else ""
            )
            + f". Source: {prediction.published.source}.",
        ]
    return lines


def write_lab_junit(path: Path, lab: SizingLab) -> None:
    """``--junit FILE``: one testsuite per sizing; a sizing whose server never served is a
    testsuite with one error (``pipstorm.engine.report.ci.junit``)."""
    from pipstorm.engine.report.ci.junit import error_suite, testsuite, write_junit

    suites = []
    for outcome in lab.outcomes:
        name = f"pipstorm sizing-lab {outcome.sizing.label()}"
        if outcome.result is None:
            suites.append(error_suite(name, outcome.start_error or "the target did not start"))
        else:
            suites.append(testsuite(outcome.result.report, name))
    write_junit(path, suites)
