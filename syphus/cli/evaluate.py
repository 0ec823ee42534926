"""``syphus eval``: score a model on benchmarks read from local files; ``syphus eval compare A B``."""

from __future__ import annotations

from pathlib import Path

import typer

EXIT_BUDGET = 3  # as `syphus generate`: --max-cost stopped the run

eval_app = typer.Typer(
    name="eval",
    help="Evaluate a model on benchmarks (MME, POPE, ScienceQA, SEED, MMBench, ...) from local files.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
)


@eval_app.callback()
def eval_cmd(
    ctx: typer.Context,
    model: str = typer.Option(
        None,
        "--model",
        help="A saved Otter folder (OUT/model of `syphus train`), or an endpoint vision model "
        "(openai/gpt-4o, or the served name with --api-base).",
    ),
    bench: str = typer.Option(
        None, "--bench", help="Benchmarks, comma-separated: mme,pope,... (or module:OBJECT)."
    ),
    data: Path = typer.Option(
        None, "--data", help="Folder with each benchmark's distributed files as DATA/<bench>/."
    ),
    out: Path = typer.Option(
        None, "--out", help="Results folder: OUT/<model>/<bench>.json and .samples.jsonl."
    ),
    config: Path = typer.Option(
        None, "--config", help="Evaluation YAML (datasets: [...], models: [...]) instead of the options."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Questions per generate call (Otter)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Only the first N samples of each benchmark."),
    split: str = typer.Option(None, "--split", help="The benchmark split to read, where it has several."),
    prompt: str = typer.Option(None, "--prompt", help="The benchmarks' prompt style (default: their own)."),
    max_new_tokens: int = typer.Option(
        None, "--max-new-tokens", min=1, help="Longest answer (default: each benchmark's own)."
    ),
    judge: str = typer.Option(
        None,
        "--judge",
        help="Judge model for MathVista's extractor and MM-Vet's grader (through the engine).",
    ),
    judge_api_base: str = typer.Option(
        None, "--judge-api-base", help="OpenAI-compatible endpoint of the judge."
    ),
    max_cost: float = typer.Option(
        None, "--max-cost", min=0, help="Stop before spending more than this many USD (model and judge)."
    ),
    api_base: str = typer.Option(
        None, "--api-base", help="OpenAI-compatible endpoint of the model under test."
    ),
    backend: str = typer.Option("auto", "--backend", help="auto, http or litellm (endpoint models)."),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="Endpoint requests in flight at once."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Evaluate a model on benchmarks and write every score with its standard error and 95% interval.

    Answers are journaled as they come and endpoint/judge requests are cached in OUT/.requests:
    rerun the same command after any stop and nothing answered is asked or paid for again.

    Exit status: 0 done; 1 an error (one line); 3 --max-cost reached (rerun with more to go on).
    """
    if ctx.invoked_subcommand is not None:
        return
    from schemas.errors import SyphusError
    from schemas.eval import DatasetEntry, EvalFile, ModelEntry, load_eval_file
    from syphus.cli.ui import progress_bar
    from syphus.eval.runner import run_eval_file

    if config is not None:
        given = [n for n, v in (("--model", model), ("--bench", bench)) if v]
        if given:
            raise SyphusError(f"--config {config}: give the models and datasets in the file, not {given[0]}")
        cfg = load_eval_file(config)
        updates = {
            k: v
            for k, v in {"out": str(out) if out else None, "data": str(data) if data else None,
                         "limit": limit, "judge": judge, "max_cost": max_cost}.items()
            if v is not None
        }  # fmt: skip
        cfg = cfg.model_copy(update=updates)
        base = config.parent
    else:
        if not model:
            raise SyphusError("give --model (an Otter folder or an endpoint model), or --config FILE")
        if not bench:
            raise SyphusError("give --bench NAME[,NAME...] (e.g. mme,pope), or --config FILE")
        names = [b.strip() for b in bench.split(",") if b.strip()]
        cfg = EvalFile(
            datasets=[
                DatasetEntry(name=n, split=split, prompt=prompt, max_new_tokens=max_new_tokens) for n in names
            ],
            models=[ModelEntry(name=model, api_base=api_base, backend=backend)],
            data=str(data) if data else None,
            out=str(out) if out else None,
            batch_size=batch_size,
            limit=limit,
            judge=judge,
            judge_api_base=judge_api_base,
            max_cost=max_cost,
            concurrency=concurrency,
        )
        base = Path(".")
    if cfg.data is None and all(d.path is None for d in cfg.datasets):
        raise SyphusError("give --data DIR: the folder with each benchmark's files as DIR/<bench>/")
    try:
        with progress_bar("eval", enabled=progress) as bar:
            done = run_eval_file(cfg, base, progress=bar)
    except SyphusError as e:
        if "--max-cost" in str(e):
            typer.secho(f"stopped: {e}", fg="yellow", err=True)
            raise SystemExit(EXIT_BUDGET) from e
        raise
    for m in done:
        _print_results(m.model, m.results)
        typer.echo(f"wrote {m.folder}")


def _fmt(x: float) -> str:
    return f"{0.0 if abs(x) < 1e-12 else x:.4g}"  # an interval end of 3e-17 is 0


def _print_results(model: str, results) -> None:
    """The overall metrics of each benchmark (per category lines are in the files)."""
    from syphus.cli.ui import summary_table

    rows = []
    for r in results:
        for m in r.metrics:
            if m.category is None:
                rows.append(
                    (
                        r.bench,
                        m.name,
                        _fmt(m.value),
                        _fmt(m.stderr),
                        f"[{_fmt(m.ci95[0])}, {_fmt(m.ci95[1])}]",
                        m.n,
                    )
                )
    summary_table(
        f"syphus eval: {model}", rows, headers=("bench", "metric", "value", "stderr", "95% CI", "n")
    )


@eval_app.command("compare")
def compare_cmd(
    a: Path = typer.Argument(..., help="Results of model A: OUT/<model> (or one <bench>.json)."),
    b: Path = typer.Argument(..., help="Results of model B, on the same benchmarks."),
    categories: bool = typer.Option(False, "--categories", help="Also show the per-category differences."),
) -> None:
    """Paired differences A - B over the samples both scored, with standard errors and 95% intervals."""
    from schemas.errors import SyphusError
    from syphus.cli.ui import summary_table
    from syphus.eval.runner import read_results
    from syphus.eval.stats import compare

    ra, rb = read_results(a), read_results(b)
    shared = sorted(set(ra) & set(rb))
    if not shared:
        raise SyphusError(f"{a} and {b} share no benchmark (A has {', '.join(ra)}; B has {', '.join(rb)})")
    rows = []
    for name in shared:
        for m in compare(ra[name], rb[name]):
            if m.category is not None and not categories:
                continue
            rows.append(
                (name, m.name, m.category or "", f"{m.value:+.4g}", _fmt(m.stderr),
                 f"[{m.ci95[0]:+.4g}, {m.ci95[1]:+.4g}]", m.n)
            )  # fmt: skip
    summary_table(
        f"syphus eval compare: {a} - {b}",
        rows,
        headers=("bench", "metric", "category", "A - B", "stderr", "95% CI", "n"),
    )


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
