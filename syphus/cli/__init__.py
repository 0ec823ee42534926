"""The ``syphus`` command line: one module per stage (``store``, ``generate``, ``retrieve``,
``train``, ``report``, ``demo``), each with a ``register(app)`` that adds its commands.

The command modules import their heavy dependencies (torch, duckdb, litellm) only inside the
command bodies, so ``syphus --help`` stays fast. Rendering (progress bars, tables) lives in
``syphus.cli.ui``; the stages below return data and take a progress callback.
"""

from __future__ import annotations

import os
import sys

import typer

from syphus import __version__

app = typer.Typer(
    name="syphus",
    help="Turn visual annotations into multimodal instruction data and train an Otter model on it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"syphus {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    if debug:
        os.environ["SYPHUS_DEBUG"] = "1"


def _register_all() -> None:
    from syphus.cli import demo, evaluate, generate, models, report, retrieve, score, store, train

    for mod in (store, generate, score, retrieve, train, evaluate, report, demo, models):
        mod.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors for user mistakes, tracebacks only with --debug."""
    # Models load only from disk (packages, local paths, caches): nothing downloads silently.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # Idle OpenMP threads sleep instead of spinning: much faster on shared or small machines.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from schemas.errors import SyphusError

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # With standalone_mode=False click returns a typer.Exit's code instead of exiting.
        rc = app(args=argv, standalone_mode=False)
        if isinstance(rc, int) and rc != 0:
            sys.exit(rc)
    except SyphusError as e:
        if debug:
            raise
        from syphus.engine.keys import redact

        typer.secho(f"error: {redact(str(e))}", fg=typer.colors.RED, err=True)  # a server may quote a key
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted: finished work is saved; rerun the same command to resume", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as e:  # click usage errors carry their own exit code
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if debug:
            raise
        from syphus.engine.keys import redact

        typer.secho(
            f"error: {type(e).__name__}: {redact(str(e))} (rerun with --debug for the traceback)",
            fg="red",
            err=True,
        )
        sys.exit(2)
