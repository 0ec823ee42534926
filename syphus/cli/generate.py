"""Commands of the generate stage (registered on the main app): generate, preview, reparse."""

from __future__ import annotations

from pathlib import Path

import typer

from syphus.cli.options import CORPUS

DEFAULT_MODEL = "local/smollm2-135m"  # same as syphus.engine.pipeline.DEFAULT_MODEL, kept import-free

EXIT_BUDGET = 3  # --max-cost stopped the run
EXIT_FAILED_REQUESTS = 4  # the run finished, but some requests ran out of attempts

TASK_HELP = "Task name (LA, SD, CGD, SN, DC, TVC, VST, E4D, ...) or 'package.module:Class' for your own task."
ANN_HELP = "Annotation file(s) in the dataset's own format (repeat the option for several files)."


def _options(**kw):
    from syphus.engine.pipeline import GenerateOptions

    return GenerateOptions(**kw)


def _task_options(values: list[str]) -> dict:
    import yaml

    from schemas.errors import SyphusError

    out = {}
    for v in values:
        if "=" not in v:
            raise SyphusError(f"--task-option '{v}': expected NAME=VALUE")
        k, _, raw = v.partition("=")
        try:
            val = yaml.safe_load(raw)
        except yaml.YAMLError:
            val = raw
        # '{stem}' is a format pattern, not a YAML mapping with empty values
        if isinstance(val, dict) and all(x is None for x in val.values()):
            val = raw
        out[k.strip()] = val
    return out


def generate(
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    annotations: list[Path] = typer.Option(..., "--annotations", help=ANN_HELP),
    corpus: Path = CORPUS,
    model: str = typer.Option(
        DEFAULT_MODEL,
        "--model",
        help="Model: local/smollm2-135m (offline), openai/gpt-4o, anthropic/claude-..., or the served name with --api-base.",
    ),
    api_base: str = typer.Option(
        None,
        "--api-base",
        help="Base URL of an OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp), e.g. http://127.0.0.1:8000/v1; key from SYPHUS_API_KEY.",
    ),
    backend: str = typer.Option(
        "auto", "--backend", help="auto (from --model/--api-base), http, litellm or local."
    ),
    batch: bool = typer.Option(
        False,
        "--batch",
        help="Use the OpenAI Batch API or Anthropic Message Batches (half price; resumable by batch id).",
    ),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="Requests in flight at once."),
    rpm: float = typer.Option(None, "--rpm", min=0.001, help="Requests-per-minute limit."),
    tpm: float = typer.Option(
        None, "--tpm", min=1, help="Tokens-per-minute limit (prompt estimate + max tokens)."
    ),
    timeout: float = typer.Option(
        120.0, "--timeout", min=0.01, help="Seconds before one attempt is abandoned and retried."
    ),
    max_cost: float = typer.Option(
        None, "--max-cost", min=0, help="Stop cleanly before spending more than this many USD in this run."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the number of requests and the estimated cost; send nothing."
    ),
    limit: int = typer.Option(None, "--limit", min=1, help="Use only the first N annotations."),
    translate_to: str = typer.Option(
        None, "--translate-to", help="Also translate the generated pairs into these languages, e.g. zh,ja,es."
    ),
    temperature: float = typer.Option(
        0.7, "--temperature", min=0, help="Sampling temperature (part of the request key)."
    ),
    max_tokens: int = typer.Option(
        1024, "--max-tokens", min=1, help="Most tokens per reply (part of the request key)."
    ),
    max_attempts: int = typer.Option(
        6, "--max-attempts", min=1, help="Attempts per request before it is logged as an error."
    ),
    poll_interval: float = typer.Option(
        30.0, "--poll-interval", min=0.01, help="Seconds between batch status checks (--batch)."
    ),
    task_option: list[str] = typer.Option(
        [], "--task-option", help="NAME=VALUE option passed to the task (repeatable)."
    ),
    with_images: bool = typer.Option(
        False,
        "--with-images",
        help="Also send each annotation's images (from the corpus) to a vision model; see docs/generate.md.",
    ),
    image_max_side: int = typer.Option(
        None,
        "--image-max-side",
        min=16,
        help="Downscale images whose longest side is over this before sending (default 768; Anthropic 1092).",
    ),
    image_detail: str = typer.Option(
        "auto", "--image-detail", help="OpenAI image detail: auto, low (85 tokens an image) or high."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Generate instruction-response pairs from annotation files into the corpus.

    Every request is logged in the corpus by a hash of (model, messages, parameters): rerun the
    same command after any crash and only what is missing is requested. The summary accounts for
    every annotation record read: skipped (with the reason), merged into another annotation,
    sharing an identical prompt (asked once, pairs given to each), already done, or requested.

    Exit status: 0 done; 1 an error (one line); 3 --max-cost stopped the run; 4 finished, but
    some requests failed after --max-attempts (rerun the same command to retry only those).
    """
    from syphus.cli.ui import console, progress_bar
    from syphus.engine.pipeline import generate as run_generate
    from syphus.engine.pipeline import resolve_task

    opts = _options(
        model=model, api_base=api_base, backend=backend, batch=batch, concurrency=concurrency, rpm=rpm, tpm=tpm,
        timeout=timeout, max_cost=max_cost, limit=limit, temperature=temperature, max_tokens=max_tokens,
        max_attempts=max_attempts, poll_interval=poll_interval, with_images=with_images,
        image_max_side=image_max_side, image_detail=image_detail,
    )  # fmt: skip
    t = resolve_task(task, **_task_options(task_option))
    with progress_bar("generate", enabled=progress and not dry_run) as bar:
        summary = run_generate(t, annotations, corpus, opts, dry_run=dry_run, progress=bar, warn=_warn)
    if dry_run:
        _summary_table("syphus generate --dry-run (nothing sent)", summary)
        if summary.get("image_token_rule"):
            console.print(f"image tokens counted by {summary['image_token_rule']}", soft_wrap=True,
                          markup=False, highlight=False)  # fmt: skip
        _print_notes(summary)
        if not summary["price_known"]:
            console.print(f"[yellow]no price for '{model}' in litellm's table: costs shown as 0[/yellow]")
        return
    _summary_table(f"syphus generate: {summary['status']}", summary)
    _print_notes(summary)
    if summary["last_errors"]:
        console.print("[red]last errors:[/red] " + " | ".join(summary["last_errors"][-3:]))
    if translate_to and summary["status"] in ("done", "done_with_errors"):
        from syphus.engine.translate import translate_run

        langs = [x.strip() for x in translate_to.split(",") if x.strip()]
        with progress_bar("translate", enabled=progress) as bar:
            done = translate_run(t, annotations, corpus, opts, langs, bar)
        for lang, s in zip(langs, done, strict=True):
            _summary_table(f"syphus generate: translate {lang}: {s['status']}", s)
    if summary["status"] == "budget":
        console.print(
            f"[yellow]stopped: --max-cost {max_cost} reached; rerun with a higher budget to continue[/yellow]"
        )
        raise SystemExit(EXIT_BUDGET)  # typer.Exit's code is dropped by the non-standalone main()
    if summary["status"] == "done_with_errors":
        console.print(
            f"[red]{summary['errors']} request(s) failed after all attempts; rerun the same command to retry "
            "only those[/red]"
        )
        raise SystemExit(EXIT_FAILED_REQUESTS)


def _summary_table(title: str, summary: dict) -> None:
    """A run's figures, one row each (costs to the micro-dollar, other floats to two places)."""
    from syphus.cli.ui import summary_table

    rows = [
        (k.replace("_", " "), f"{v:.6f}" if isinstance(v, float) and "cost" in k else
         (f"{v:.2f}" if isinstance(v, float) else str(v)))
        for k, v in summary.items()
        if k not in ("status", "last_errors", "notes", "image_token_rule")
    ]  # fmt: skip
    summary_table(title, rows)


def _warn(message: str) -> None:
    from syphus.cli.ui import console

    console.print(f"warning: {message}", style="yellow", soft_wrap=True, markup=False, highlight=False)


def _print_notes(summary: dict) -> None:
    """Records that did not become annotations of their own: how many, why, the first of them."""
    from syphus.cli.ui import console

    for line in summary.get("notes") or []:
        console.print(line, style="yellow", soft_wrap=True, markup=False, highlight=False)


def preview(
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    annotations: list[Path] = typer.Option(..., "--annotations", help=ANN_HELP),
    n: int = typer.Option(5, "-n", "--num", min=1, help="How many annotations to run."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model string, as for generate."),
    api_base: str = typer.Option(None, "--api-base", help="Base URL of an OpenAI-compatible endpoint."),
    backend: str = typer.Option("auto", "--backend", help="auto, http, litellm or local."),
    temperature: float = typer.Option(0.7, "--temperature", min=0, help="Sampling temperature."),
    max_tokens: int = typer.Option(1024, "--max-tokens", min=1, help="Most tokens per reply."),
    timeout: float = typer.Option(120.0, "--timeout", min=0.01, help="Seconds per attempt."),
    task_option: list[str] = typer.Option(
        [], "--task-option", help="NAME=VALUE option passed to the task (repeatable)."
    ),
) -> None:
    """Render the full prompt and run a few annotations, printing each beside its parsed pairs.

    Nothing is written to a corpus: this is the loop for tuning a task's in-context examples.
    """
    from rich.panel import Panel
    from rich.table import Table

    from syphus.cli.ui import out
    from syphus.engine.pipeline import preview as run_preview
    from syphus.engine.pipeline import preview_requests, resolve_task

    opts = _options(model=model, api_base=api_base, backend=backend, temperature=temperature,
                    max_tokens=max_tokens, timeout=timeout, concurrency=min(n, 8), max_attempts=3)  # fmt: skip
    t = resolve_task(task, **_task_options(task_option))
    reqs = preview_requests(t, annotations, n, opts)
    text = "\n\n".join(f"[bold]{m['role']}[/bold]\n{m['content']}" for m in reqs[0].messages)
    out.print(Panel(text, title=f"prompt for annotation {reqs[0].ctx.id}", expand=False))
    for item in run_preview(t, reqs, opts):
        ann = item.annotation
        table = Table(title=f"annotation {ann.id}", show_lines=True, expand=True)
        table.add_column("annotation", ratio=1)
        table.add_column("parsed pairs", ratio=1)
        left = ann.data.model_dump_json(indent=1) if hasattr(ann.data, "model_dump_json") else str(ann.data)
        if item.pairs:
            right = "\n\n".join(
                f"[bold]Q:[/bold] {p['instruction']}\n[bold]A:[/bold] {p['answer']}" for p in item.pairs
            )
        else:
            right = f"[red]{item.error}[/red]\n\n{item.raw or ''}"
        table.add_row(left[:4000], right)
        out.print(table)


def reparse(
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    annotations: list[Path] = typer.Option(..., "--annotations", help=ANN_HELP),
    corpus: Path = CORPUS,
    task_option: list[str] = typer.Option(
        [], "--task-option", help="NAME=VALUE option passed to the task (repeatable)."
    ),
) -> None:
    """Re-run the task's current parser over the stored raw replies: no request is sent.

    Pairs and quarantine entries of those replies are replaced by what the parser says now.
    """
    from syphus.cli.ui import summary_table
    from syphus.engine.pipeline import reparse as run_reparse
    from syphus.engine.pipeline import resolve_task

    summary = run_reparse(resolve_task(task, **_task_options(task_option)), annotations, corpus)
    summary_table("syphus reparse", [(k.replace("_", " "), v) for k, v in summary.items()])


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("preview")(preview)
    app.command("reparse")(reparse)
