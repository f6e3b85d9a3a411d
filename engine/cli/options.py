"""Options several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
