"""The command-line options several commands share, and the one way a corpus is named.

Every command takes its corpus with ``--corpus DIR`` (or ``-c DIR``); ``embed``, ``retrieve`` and
``curate`` also take it as their first argument, the form their early versions had.
"""

from __future__ import annotations

from pathlib import Path

import typer

CORPUS_HELP = "Corpus directory (holds corpus.duckdb and images/)."

CORPUS = typer.Option(..., "--corpus", "-c", help=CORPUS_HELP)
# The positional-or-option pair, read with resolve_corpus.
CORPUS_ARGUMENT = typer.Argument(
    None, help="Corpus directory (or give it with --corpus).", show_default=False
)
CORPUS_OPTIONAL = typer.Option(None, "--corpus", "-c", help=CORPUS_HELP)


def resolve_corpus(argument: Path | None, option: Path | None) -> Path:
    """The corpus directory, given either as the argument or with ``--corpus``, not both."""
    from schemas.errors import SyphusError

    if argument is not None and option is not None and argument != option:
        raise SyphusError(f"two corpora given ({argument} and --corpus {option}): give it once")
    path = argument or option
    if path is None:
        raise SyphusError("no corpus given: pass its directory as the argument or with --corpus")
    return path


API_BASE_HELP = (
    "Base URL of an OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp), e.g. http://127.0.0.1:8000/v1; "
    "key from SYPHUS_API_KEY. Repeat it for several servers of the same model: requests go to the one "
    "with the fewest in flight, and a server that keeps failing is drained."
)
API_BASE = typer.Option(None, "--api-base", help=API_BASE_HELP)


def endpoint_options(api_base: list[str] | None) -> dict:
    """``--api-base`` values (repeatable) as GenerateOptions fields: the first, and the rest."""
    bases = list(dict.fromkeys(api_base or []))  # the same server twice is one server
    return {"api_base": bases[0] if bases else None, "extra_api_bases": bases[1:]}
