"""The ``pipstorm`` typer app: every command registered, and ``main`` with its exit codes.

Exit codes (as pypa/build; docs/verdicts.md):

- 0 pass, 1 fail (a threshold failed), 3 inconclusive (the load generator was the bottleneck, so
  the profile was not played: ``pipstorm.engine.analysis.verdict`` decides all three);
- 2 usage or environment error (one ``ERROR:`` line, never a traceback: any error of a layer's
  base, ``pipstorm.engine.errors.UsageError``, ``pipstorm.clients.errors.ClientsError``,
  ``pipstorm.infra.errors.InfraError``, ``pipstorm.packages.spec.CorpusError``, or an
  ``OSError``);
- 130 interrupted (143 after SIGTERM; a report of the part that ran is still written).
"""

from __future__ import annotations

import typer
from typer.exceptions import TyperException

from pipstorm.clients.errors import ClientsError
from pipstorm.engine.cli import aws, cluster, corpus, labs, replay, reports, run, serve
from pipstorm.engine.errors import UsageError
from pipstorm.infra.errors import InfraError
from pipstorm.packages.spec import CorpusError

EXIT_USAGE = 2

#: Error bases that mean "bad input or unusable environment": one line, exit 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError,
    ClientsError,
    InfraError,
    CorpusError,
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

app.command()(run.run)
app.command()(labs.realism)
app.command("retry-lab")(labs.retry_lab)
app.command()(aws.watch)
app.command("sizing-lab")(labs.sizing_lab)
app.command()(replay.replay)
app.command()(reports.profiles)
app.command()(reports.report)
app.command()(reports.compare)
app.command()(reports.trace)
app.command()(serve.serve)
app.command()(cluster.scheduler)
app.command()(cluster.worker)
corpus_app.command("build")(corpus.corpus_build)
corpus_app.command("upload")(corpus.corpus_upload)


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
    """The error as one line, with any ``scheme://user:pass@`` masked: a message may quote a
    URL the user gave, and a terminal or CI log is no place for its password."""
    from pipstorm.clients.process import redact

    text = str(exc) or type(exc).__name__
    return " ".join(redact(text).split())
