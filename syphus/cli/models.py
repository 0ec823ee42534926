"""``syphus models``: the pretrained models that load offline, their names, and who uses them."""

from __future__ import annotations

import json

import typer


def models(
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON (one object per model)."),
) -> None:
    """List the models that work without a download: canonical name, the other names each stage
    accepts, whether their packages are installed (or how to install them), and which stage uses it."""
    from curation.pretrained import available_models

    rows = available_models()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from syphus.cli.ui import summary_table

    summary_table(
        "Offline models",
        [
            (
                r["name"],
                ", ".join(r["aliases"]) or "-",
                r["weights"],
                "yes" if r["available"] else f"no: {r['install']}",
                "; ".join(r["uses"]),
            )
            for r in rows
        ],
        headers=("name", "also accepted as", "weights", "available", "used by"),
    )


def register(app: typer.Typer) -> None:
    app.command("models")(models)
