"""``syphus score``: a judge model scores every pair of a corpus against a rubric."""

from __future__ import annotations

from pathlib import Path

import typer

from syphus.cli.generate import DEFAULT_MODEL, EXIT_BUDGET, EXIT_FAILED_REQUESTS
from syphus.cli.options import API_BASE, CORPUS, endpoint_options


def score(
    corpus: Path = CORPUS,
    judge: str = typer.Option(
        DEFAULT_MODEL,
        "--judge",
        help="Judge model, as --model of generate: local/smollm2-135m (offline), openai/gpt-4o, or the served "
        "name with --api-base.",
    ),
    rubric: Path = typer.Option(
        None,
        "--rubric",
        help="Rubric YAML (name, system, criteria, scale_min, scale_max); default: the packaged one.",
    ),
    api_base: list[str] = API_BASE,
    backend: str = typer.Option(
        "auto", "--backend", help="auto (from --judge/--api-base), http, litellm or local."
    ),
    task: list[str] = typer.Option([], "--task", help="Score only the pairs of this task (repeatable)."),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="Requests in flight at once."),
    timeout: float = typer.Option(
        120.0, "--timeout", min=0.01, help="Seconds before one attempt is retried."
    ),
    max_cost: float = typer.Option(
        None, "--max-cost", min=0, help="Stop cleanly before spending more than this many USD in this run."
    ),
    max_tokens: int = typer.Option(
        256, "--max-tokens", min=1, help="Most tokens per verdict (part of the key)."
    ),
    max_attempts: int = typer.Option(6, "--max-attempts", min=1, help="Attempts per request."),
    limit: int = typer.Option(None, "--limit", min=1, help="Score only the first N pairs (in id order)."),
    images: bool = typer.Option(
        True, "--images/--no-images", help="Send each pair's images when the judge can take them."
    ),
    structured: bool = typer.Option(
        True,
        "--structured/--no-structured",
        help="Ask for JSON of the verdict schema where the endpoint supports it.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count the requests and estimate the cost; send nothing."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Score every instruction-response pair with a judge model against a rubric.

    Each verdict (a score on the rubric's scale and a one-sentence reason) is stored in the corpus
    with the judge model and the rubric's sha256. Requests go through the engine's request log:
    rerun after a crash and nothing answered is asked again; the same judge and rubric never score
    a pair twice; an edited rubric scores again. Then 'syphus curate --min-score X' flags the
    low ones and export leaves them out.

    Exit status: 0 done; 1 an error (one line); 3 --max-cost stopped the run; 4 some requests
    failed after --max-attempts (rerun to retry only those).
    """
    from syphus.cli.generate import _summary_table
    from syphus.cli.ui import console, progress_bar
    from syphus.engine.judge import ScoreOptions
    from syphus.engine.judge import score as run_score
    from syphus.engine.pipeline import GenerateOptions

    opts = GenerateOptions(
        model=judge, **endpoint_options(api_base), backend=backend, concurrency=concurrency, timeout=timeout,
        max_cost=max_cost, temperature=0.0, max_tokens=max_tokens, max_attempts=max_attempts,
    )  # fmt: skip
    sopts = ScoreOptions(rubric_path=rubric, tasks=task or None, limit=limit, with_images=images,
                         structured=structured)  # fmt: skip
    with progress_bar("score", enabled=progress and not dry_run) as bar:
        summary = run_score(corpus, opts, sopts, dry_run=dry_run, progress=bar)
    if dry_run:
        _summary_table("syphus score --dry-run (nothing sent)", summary)
        if summary.get("image_token_rule"):
            console.print(f"image tokens counted by {summary['image_token_rule']}", soft_wrap=True,
                          markup=False, highlight=False)  # fmt: skip
        if not summary["price_known"]:
            console.print(f"[yellow]no price for '{judge}' in litellm's table: costs shown as 0[/yellow]")
        return
    _summary_table(f"syphus score: {summary['status']}", summary)
    if summary.get("last_errors"):
        console.print("[red]last errors:[/red] " + " | ".join(summary["last_errors"][-3:]))
    if summary.get("first_unparseable"):
        console.print(
            f"[yellow]unparseable verdicts (quarantined): first {summary['first_unparseable']}[/yellow]"
        )
    if summary["status"] == "budget":
        console.print(f"[yellow]stopped: --max-cost {max_cost} reached; rerun with a higher budget[/yellow]")
        raise SystemExit(EXIT_BUDGET)
    if summary["status"] == "done_with_errors":
        console.print(
            f"[red]{summary.get('errors', 0)} request(s) failed; rerun the same command to retry them[/red]"
        )
        raise SystemExit(EXIT_FAILED_REQUESTS)


def register(app: typer.Typer) -> None:
    app.command("score")(score)
