"""Options several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipstorm.infra.pypiserver.sizing import Sizing, custom, preset

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
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="The index: terraform:DIR (a deployed Terraform root: URL, credentials and "
        "CloudWatch from its outputs), url:URL (as --index-url) or embedded (the default).",
    ),
]
AwsRoleOpt = Annotated[
    str | None,
    typer.Option(
        "--aws-role-arn",
        help="IAM role to assume (STS) for reading CloudWatch; default: AWS_ROLE_ARN.",
    ),
]

# The embedded target's sizing (pipstorm.infra.pypiserver.sizing): a preset and the knobs behind it.
SizingOpt = Annotated[
    str | None,
    typer.Option(
        "--sizing",
        help="Size the embedded target like the seed's deployments and confine it (cgroups): "
        "baseline (t3.micro, 128 MB), optimized (t3.small, 512 MB), heavy (t3.medium, 1024 MB).",
    ),
]
CpusOpt = Annotated[
    float | None, typer.Option("--cpus", help="Target CPU quota in vCPUs, e.g. 0.2.")
]
MemoryOpt = Annotated[
    str | None, typer.Option("--memory", help="Target memory limit, e.g. 128M, 1G.")
]
WorkerClassOpt = Annotated[
    str | None, typer.Option("--worker-class", help="gunicorn worker class: gevent or sync.")
]
AuthOpt = Annotated[
    str | None,
    typer.Option("--auth", help="htpasswd hash: none, apr1 or bcrypt:COST (e.g. bcrypt:12)."),
]
HashAlgoOpt = Annotated[
    str | None,
    typer.Option("--hash-algo", help="Hash in the listing links: sha256 or off (pypiserver's)."),
]
BackendOpt = Annotated[
    str | None,
    typer.Option("--backend", help="pypiserver backend: simple-dir (the seed's) or cached-dir."),
]
AllowUnconfinedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unconfined",
        help="Run a sized target without limits where cgroups cannot be used (no root).",
    ),
]
AllowGeneratorBoundOpt = Annotated[
    bool,
    typer.Option(
        "--allow-generator-bound",
        help="Keep PASS/FAIL when the load generator was the bottleneck (with the warning) "
        "instead of the verdict INCONCLUSIVE, exit 3; run.json records it (docs/verdicts.md).",
    ),
]
ServerWorkersOpt = Annotated[
    int | None,
    typer.Option("--server-workers", help="gunicorn workers of the sized embedded target."),
]


def build_sizing(
    sizing: str | None,
    *,
    cpus: float | None = None,
    memory: str | None = None,
    workers: int | None = None,
    worker_class: str | None = None,
    auth: str | None = None,
    hash_algo: str | None = None,
    backend: str | None = None,
) -> Sizing | None:
    """The sizing asked for: a preset changed by knobs, knobs alone (``custom``), or None."""
    knobs = (cpus, memory, workers, worker_class, auth, hash_algo, backend)
    if sizing is None and all(value is None for value in knobs):
        return None
    base = preset(sizing) if sizing is not None else custom(workers or 2)
    return base.with_knobs(
        cpus=cpus,
        memory=memory,
        workers=workers,
        worker_class=worker_class,
        auth=auth,
        hash_algo=hash_algo,
        backend=backend,
    )


LaunchOpt = Annotated[
    str | None,
    typer.Option(
        "--launch",
        help="warm: runs forked from a launcher that has imported the client, gated at their "
        "instant (default; uv and http always exec); exec: a fresh process per run.",
    ),
]
ThresholdOpt = Annotated[
    list[str] | None,
    typer.Option(help="Override a threshold: KEY=VALUE (or KEY=off). Repeatable."),
]
RunTimeoutOpt = Annotated[float, typer.Option(help="Seconds before a client run is stopped.")]
ClientOpt = Annotated[
    str | None, typer.Option(help="Every run this client: pip, poetry, uv, twine or http.")
]
