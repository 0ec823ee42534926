"""Commands of the report stage (registered on the main app)."""

from __future__ import annotations

from pathlib import Path

import typer

from syphus.cli.options import CORPUS_OPTIONAL


def report(
    corpus: Path | None = CORPUS_OPTIONAL,
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write (self-contained)."),
    run: str | None = typer.Option(
        None,
        "--run",
        help="Show only this run: its pairs, the context sets it assigned, its quarantine and figures.",
    ),
    train_dir: Path | None = typer.Option(
        None,
        "--train-dir",
        help="Training output folder: adds its loss curve (loss PNG, trainer_state.json or JSONL metrics) "
        "and eval samples (*eval*.jsonl).",
    ),
    eval_dirs: list[Path] = typer.Option(
        [],
        "--eval",
        help="Results folder of `syphus eval` (OUT, or OUT/<model>); repeatable. Adds the eval page: "
        "scores with 95% intervals per benchmark and category, and each sample, filterable to the wrong ones.",
    ),
    eval_samples: int = typer.Option(
        500, "--eval-samples", help="Sample rows shown per model and benchmark (the wrong ones first)."
    ),
    samples: int = typer.Option(8, "--samples", help="Samples (source annotations) shown per task."),
) -> None:
    """Write one self-contained HTML page showing a corpus: per task, samples with thumbnails, their
    annotation, generated pairs and in-context examples; quarantined outputs; per-run counts,
    tokens, cost and req/s; a training run's loss curve and eval samples; and evaluation results
    (--eval, and the training folder's eval/). Give --corpus, --eval or both."""
    from curation.report import build_report
    from syphus.cli.ui import console, progress_bar

    with progress_bar("report", None) as advance:
        s = build_report(
            corpus,
            out,
            run_id=run,
            train_dir=train_dir,
            eval_dirs=eval_dirs,
            samples_per_task=samples,
            eval_samples=eval_samples,
            progress=advance,
        )
    tasks = ", ".join(f"{t} {n}" for t, n in s.tasks.items()) or "none"
    line = []
    if corpus is not None:
        line.append(
            f"samples shown: {s.samples} ({tasks}); pairs: {s.pairs}; quarantined: {s.quarantined}; runs: {s.runs}"
        )
    if s.training:
        line.append("training: yes")
    if s.eval_results:
        line.append(f"eval: {s.eval_results} result(s), {s.eval_samples} sample rows")
    console.print("; ".join(line))
    typer.echo(f"report: {s.out.resolve()} ({s.nbytes / 1e6:.2f} MB)")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
