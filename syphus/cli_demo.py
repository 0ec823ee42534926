"""``syphus demo``: the whole pipeline on the bundled examples (registered on the main app)."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_cmd(
    out: Path = typer.Option(
        Path("demo-out"), "--out", "-o", help="Where the corpus, shards, model and report go."
    ),
    model: str = typer.Option(
        "local/smollm2-135m",
        "--model",
        help="Generation model: the offline SmolLM2 default, or any litellm string (e.g. openai/gpt-4o-mini) "
        "with its API key in the environment; a cost estimate is printed before anything is paid for.",
    ),
    train_steps: int = typer.Option(30, "--train-steps", help="Optimizer steps for the small Otter."),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Smallest version (tiny random Otter, fewest requests): what the CI end-to-end test runs.",
    ),
) -> None:
    """Run import -> generate -> translate -> retrieve -> curate -> export -> train -> chat -> report
    on the bundled examples, printing each command as it runs. Rerunning resumes."""
    import time

    from syphus.demo import DemoPlan, run_demo
    from syphus.ui import summary_table

    plan = DemoPlan(out=out, model=model, quick=quick, train_steps=train_steps)
    if quick:
        plan.train_steps = min(train_steps, 8)
        plan.limit_la, plan.limit_dc, plan.limit_sd, plan.limit_translate = 1, 1, 1, 1
        plan.max_tokens = 256
    t0 = time.perf_counter()
    timings, answer = run_demo(plan, echo=typer.echo)
    total = time.perf_counter() - t0
    summary_table(
        "demo",
        [(t, f"{dt:.0f} s", s) for t, dt, s in timings] + [("total", f"{total / 60:.1f} min", "")],
        headers=("step", "time", "status"),
    )
    typer.echo(f"\nOtter's answer about examples/data/coco/images/shapes_002.png: {answer!r}")
    if model == "local/smollm2-135m":
        typer.echo(
            "Note: everything above ran offline on very small models (SmolLM2-135M wrote the pairs; a small Otter\n"
            "trained for a few minutes on CPU answered). Expect weak, sometimes wrong text: the point is the\n"
            "pipeline, not the quality. Rerun with --model openai/gpt-4o-mini (and OPENAI_API_KEY) for real data."
        )
    typer.echo(f"\nreport: {(out / 'report.html').resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
