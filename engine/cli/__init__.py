"""The ``pipstorm`` command line: thin commands that call into the engine.

Exit codes (as pypa/build): 0 pass, 1 a threshold failed, 2 usage or environment error
(one ``ERROR:`` line, never a traceback), 130 interrupted (a report of the part that ran is
still written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from clients.runner import ClientError
from clients.venv import VenvError
from engine.analysis.compare import CompareError
from engine.analysis.thresholds import ThresholdError
from engine.report.model import ReportError
from engine.run.profiles import BUILTIN_PROFILES, ProfileError
from engine.run.target import TargetSetupError
from engine.rundir.jsonl import RecordError
from infra.credentials import CredentialsError
from infra.faults import FaultSpecError
from infra.proxy import ProxyError
from infra.pypiserver_target import TargetError
from packages.spec import CorpusError, CorpusSpec

EXIT_USAGE = 2

#: Errors that mean "bad input or unusable environment": one line, exit 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ProfileError,
    ThresholdError,
    TargetSetupError,
    TargetError,
    ProxyError,
    CorpusError,
    CredentialsError,
    ClientError,
    VenvError,
    RecordError,
    ReportError,
    CompareError,
    FaultSpecError,
    OSError,
)

app = typer.Typer(
    name="pipstorm",
    help="Load-test a Python package index with real pip clients through a recording proxy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
corpus_app = typer.Typer(help="The synthetic package corpus.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")


# Options several commands share, declared once.
ProfileOpt = Annotated[
    str, typer.Option("--profile", help="Built-in profile name or a .toml file.")
]
DurationOpt = Annotated[
    float | None,
    typer.Option("--duration", help="Run the first S seconds at the profile's real rates."),
]
TimeScaleOpt = Annotated[
    float | None, typer.Option("--time-scale", help="Compress the whole profile F times.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for the packages each run asks for.")]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Folder for the results.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", help="Worker processes of the pool (default: CPU count)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress lines.")]


def _versions(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


@app.command()
def run(
    profile: ProfileOpt,
    duration: DurationOpt = None,
    time_scale: TimeScaleOpt = None,
    index_url: Annotated[
        str | None,
        typer.Option(
            help="Index to load (default: an embedded local pypiserver). "
            "Credentials come from PYPI_USERNAME/PYPI_PASSWORD."
        ),
    ] = None,
    allow_remote_target: Annotated[
        bool, typer.Option(help="Allow an --index-url that is not a loopback address.")
    ] = False,
    results: ResultsOpt = Path("results"),
    threshold: Annotated[
        list[str] | None,
        typer.Option(help="Override a threshold: KEY=VALUE (or KEY=off). Repeatable."),
    ] = None,
    seed: SeedOpt = 1,
    workers: WorkersOpt = None,
    run_timeout: Annotated[
        float, typer.Option(help="Seconds before a client run is stopped.")
    ] = 120.0,
    quiet: QuietOpt = False,
    client: Annotated[
        str | None, typer.Option(help="Every run this client: pip, poetry, uv, twine or http.")
    ] = None,
    mix: Annotated[
        str | None, typer.Option(help="Client shares, e.g. pip=0.6,poetry=0.4 (default: profile).")
    ] = None,
    pip_version: Annotated[str | None, typer.Option(help="Pin pip, e.g. 25.3.")] = None,
    poetry_version: Annotated[str | None, typer.Option(help="Pin poetry, e.g. 2.1.3.")] = None,
    uv_version: Annotated[str | None, typer.Option(help="Pin uv, e.g. 0.13.9.")] = None,
    dep_fan_out: Annotated[
        int, typer.Option(help="Corpus packages each depend on N others (with --dep-depth).")
    ] = 0,
    dep_depth: Annotated[int, typer.Option(help="Longest dependency chain in the corpus.")] = 0,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="Inject a fault: SPEC, e.g. op=listing,status=503,first=3. Repeatable."),
    ] = None,
    count_injected: Annotated[
        bool, typer.Option(help="Count injected faults as errors in the thresholds.")
    ] = False,
) -> None:
    """Run a load profile and judge it against the thresholds."""
    from engine.run.client_mix import parse_mix
    from engine.run.execute import RunOptions, execute_run

    result = execute_run(
        RunOptions(
            profile=profile,
            duration_s=duration,
            time_scale=time_scale,
            index_url=index_url,
            allow_remote_target=allow_remote_target,
            results_root=results,
            threshold_overrides=tuple(threshold or ()),
            seed=seed,
            workers=workers,
            run_timeout_s=run_timeout,
            quiet=quiet,
            client=client,
            mix=parse_mix(mix) if mix is not None else None,
            client_versions={"pip": pip_version, "poetry": poetry_version, "uv": uv_version},
            corpus=CorpusSpec(dep_fan_out=dep_fan_out, dep_depth=dep_depth),
            faults=tuple(fault or ()),
            count_injected=count_injected,
        )
    )
    raise typer.Exit(result.exit_code)


@app.command()
def profiles() -> None:
    """List the built-in profiles."""
    from tabulate import tabulate

    rows = [
        [
            p.name,
            p.clients,
            f"{p.duration_s:g}",
            f"{p.tick_s:g}",
            f"x{p.burst_multiplier} every {p.burst_every_s:g} s" if p.has_bursts else "-",
            p.peak_clients,
            p.description,
        ]
        for p in BUILTIN_PROFILES.values()
    ]
    headers = ["profile", "clients", "duration s", "tick s", "bursts", "peak", "description"]
    typer.echo(tabulate(rows, headers=headers, tablefmt="github"))


@app.command()
def serve(
    corpus: Annotated[
        Path | None, typer.Option(help="Folder of wheels (default: the cached default corpus).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 0,
    workers: Annotated[int, typer.Option(help="gunicorn workers.")] = 2,
) -> None:
    """Run the embedded pypiserver in the foreground until Ctrl-C."""
    from infra.pypiserver_target import LocalPypiserver
    from packages.cache import cached_corpus

    directory = corpus if corpus is not None else cached_corpus(CorpusSpec()).directory
    if not directory.is_dir():
        raise CorpusError(f"corpus folder {directory} does not exist")
    import os
    import tempfile

    from infra.credentials import Credentials

    creds = Credentials.from_env(os.environ, "PYPI_USERNAME", "PYPI_PASSWORD")
    server = LocalPypiserver(directory, port=port, workers=workers, credentials=creds)
    with server, tempfile.TemporaryDirectory(prefix="pipstorm-serve-") as private:
        # The password goes to a file only its owner can read, never to the terminal or a log.
        secret = Path(private) / "credentials"
        secret.touch(mode=0o600)
        secret.write_text(
            f"{server.credentials.username}:{server.credentials.password}\n", encoding="utf-8"
        )
        typer.echo(f"serving {directory} at {server.index_url}")
        typer.echo(f"username:password in {secret} (removed on exit); Ctrl-C stops the server.")
        try:
            code = server.wait()
        except KeyboardInterrupt:
            code = 0
    raise typer.Exit(code)


@corpus_app.command("build")
def corpus_build(
    out: Annotated[Path, typer.Option(help="Folder to write the wheels into.")],
    packages: Annotated[int, typer.Option(help="Number of projects.")] = 100,
    versions: Annotated[
        str, typer.Option(help="Comma-separated versions of each project.")
    ] = "1.0.0,1.1.0,2.0.0",
    payload_kb: Annotated[int, typer.Option(help="Extra payload per wheel, KiB.")] = 0,
) -> None:
    """Build the synthetic corpus (deterministic: same options, same bytes)."""
    import time

    from packages.build import build_corpus

    spec = CorpusSpec(packages=packages, versions=_versions(versions), payload_kb=payload_kb)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    wheels = build_corpus(spec, out)
    size = sum(w.stat().st_size for w in wheels)
    typer.echo(
        f"built {len(wheels)} wheels ({size / 1e6:.2f} MB) in {time.perf_counter() - start:.2f} s"
        f" -> {out}"
    )


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run's results folder.")],
) -> None:
    """Rebuild report.json, report.md, report.html and the charts from a run's JSONL streams
    (also an interrupted run)."""
    from engine.report.terminal import terminal_summary
    from engine.report.write import write_reports

    if not (run_dir / "run.json").is_file():
        raise RecordError(f"{run_dir} is not a pipstorm results folder (no run.json)")
    built = write_reports(run_dir)
    typer.echo(terminal_summary(built))
    raise typer.Exit(built.exit_code)


@app.command()
def compare(
    runs: Annotated[
        list[Path],
        typer.Argument(help="Results folders or report.json files; the first is the baseline."),
    ],
    output_format: Annotated[str, typer.Option("--format", help="table, md or json.")] = "table",
) -> None:
    """Key figures of two or more runs side by side, with changes against the first."""
    from engine.analysis.compare import compare_paths

    typer.echo(compare_paths(runs, output_format))


@app.command()
def trace(
    run_dir: Annotated[Path, typer.Argument(help="A run's results folder.")],
    run_id: Annotated[
        str | None, typer.Option("--run", help="One client run's timeline (a run id).")
    ] = None,
) -> None:
    """Request timelines: one run's attempts per URL, or the whole run's retries and failures."""
    from engine.analysis.trace import trace_runs
    from engine.report.trace_text import render_run, render_summary
    from engine.rundir.data import RunData

    data = trace_runs(RunData.load(run_dir))
    if run_id is None:
        typer.echo(render_summary(data))
        return
    found = [t for t in data.traces if t.run_id == run_id]
    if not found:
        raise RecordError(f"no client run {run_id!r} in {run_dir}")
    typer.echo(render_run(found[0]))


@app.command()
def realism(
    profile: ProfileOpt,
    duration: DurationOpt = None,
    time_scale: TimeScaleOpt = None,
    client: Annotated[
        str | None, typer.Option(help="The real side: every run this client (default: profile).")
    ] = None,
    mix: Annotated[
        str | None, typer.Option(help="The real side's shares, e.g. pip=0.6,...")
    ] = None,
    seed: SeedOpt = 1,
    results: ResultsOpt = Path("results"),
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Play a profile with the synthetic client, then with real clients, and compare them."""
    from engine.report.realism import terminal_summary
    from engine.run.client_mix import parse_mix
    from engine.workflows.realism import RealismOptions, run_realism

    found = run_realism(
        RealismOptions(
            profile=profile,
            duration_s=duration,
            time_scale=time_scale,
            client=client,
            mix=parse_mix(mix) if mix is not None else None,
            seed=seed,
            results_root=results,
            workers=workers,
            quiet=quiet,
        )
    )
    typer.echo(terminal_summary(found))
    raise typer.Exit(found.exit_code)


@app.command("retry-lab")
def retry_lab(
    fault: Annotated[
        list[str] | None, typer.Option(help="Inject a fault: SPEC (see README). Repeatable.")
    ] = None,
    client: Annotated[str, typer.Option(help="The client kind.")] = "pip",
    client_version: Annotated[
        list[str] | None, typer.Option(help="A client version to try; repeat to compare.")
    ] = None,
    client_arg: Annotated[
        list[str] | None,
        typer.Option(help="Arguments added to the client's command, e.g. '--retries 2'."),
    ] = None,
    package: Annotated[
        str | None, typer.Option(help="NAME==VERSION to ask for (default: the first release).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for fault probabilities.")] = 1,
    run_timeout: Annotated[
        float, typer.Option(help="Seconds before a client run is stopped.")
    ] = 120.0,
    results: ResultsOpt = Path("results"),
) -> None:
    """Run one client (once per --client-version) under injected faults and print its timeline."""
    import shlex

    from engine.workflows.retry_lab import LabOptions, run_lab

    try:
        extra = tuple(arg for text in client_arg or () for arg in shlex.split(text))
    except ValueError as exc:
        raise ClientError(f"--client-arg: {exc}") from None
    options = LabOptions(
        client=client,
        versions=tuple(client_version) if client_version else (None,),
        faults=tuple(fault or ()),
        client_args=extra,
        package=package,
        seed=seed,
        run_timeout_s=run_timeout,
        results_root=results,
    )
    lab = run_lab(options, lambda line: typer.echo(line, err=True))
    typer.echo(lab.render())


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning known errors into one line and exit code 2."""
    try:
        # Without standalone mode click returns a command's typer.Exit code instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except USER_ERRORS as exc:
        typer.secho(f"ERROR: {_one_line(exc)}", fg=typer.colors.RED, err=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        typer.secho("ERROR: interrupted", fg=typer.colors.RED, err=True)
        return 130
    except typer.Abort:
        return 130
    except TyperException as exc:  # usage errors (bad option, missing argument): click's text
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.secho(f"ERROR: {_one_line(exc)}", fg=typer.colors.RED, err=True)
        return EXIT_USAGE
    return code if isinstance(code, int) else 0


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())
