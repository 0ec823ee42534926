"""``syphus demo``: the whole pipeline on the bundled examples, as a user would type it.

Each step is a real ``syphus`` command run as its own process (printed before it runs), so
the demo is also a script to copy from: import -> generate -> translate -> retrieve -> a small
visual task (drawn shapes, ``syphus shapes``) imported beside the generated pairs -> curate ->
export -> train -> eval on the held-out shapes, and on the same questions with blank images ->
chat -> report. Every step is resumable: rerunning the demo skips what is already done. The
example data and the demo's mix and training configs (``examples/configs/demo-*.yaml``) ship
inside the package (``syphus/examples`` is the repository's ``examples/`` folder), so the demo
runs the same from a clone and from a wheel.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer
import yaml

from schemas.errors import SyphusError

if TYPE_CHECKING:
    from curation.shapes import ShapeQuestion
    from syphus.eval.samples import Metric

EX = Path(__file__).resolve().parent.parent / "examples"
DATA = EX / "data"
CONFIGS = EX / "configs"
OFFLINE_MODEL = "local/smollm2-135m"
QUICK_STEPS = 600
# `syphus eval` names a model's results folder after the last two parts of its path: OUT/train/model
TRAINED_SLUG = "train_model"


@dataclass
class DemoPlan:
    out: Path
    model: str = OFFLINE_MODEL
    quick: bool = False
    train_steps: int = 1500
    shapes_train: int = 2000
    shapes_heldout: int = 300
    shapes_seed: int = 0
    limit_la: int = 2
    limit_dc: int = 1
    limit_sd: int = 1
    limit_translate: int = 1
    max_tokens: int = 384
    steps: list[tuple[str, list[str]]] = field(default_factory=list)
    example: ShapeQuestion | None = None  # the held-out question the chat step asks


def _syphus(*args: str) -> list[str]:
    return [sys.executable, "-m", "syphus.cli", *args]


def _eval(model: Path, split: Path, out: Path) -> list[str]:
    return _syphus(
        "eval",
        "--model",
        str(model),
        "--bench",
        "mimicit",
        "--data",
        str(split / "SHAPES_instructions.json"),
        "--out",
        str(out),
        "--batch-size",
        "32",
        "--no-progress",
    )


def build_plan(plan: DemoPlan) -> DemoPlan:
    from curation.shapes import heldout_questions

    out = plan.out
    c = str(out / "corpus")
    coco = DATA / "coco"
    shapes = out / "shapes"
    plan.example = heldout_questions(1, plan.shapes_seed)[0]  # what the chat step asks about
    gen_common = ["--corpus", c, "--model", plan.model, "--max-tokens", str(plan.max_tokens)]
    if plan.model == OFFLINE_MODEL:
        # Greedy decoding (with the backend's repetition penalty): sampled text from a 135M
        # model drifts off-topic and seldom keeps the Question:/Answer: format.
        gen_common += ["--temperature", "0"]
    steps: list[tuple[str, list[str]]] = [
        (
            "import a MIMIC-IT file",
            _syphus(
                "import",
                "mimicit",
                str(EX / "mimicit" / "EXAMPLE_instructions.json"),
                "--corpus",
                c,
                "--images",
                str(EX / "mimicit" / "EXAMPLE.parquet"),
                "--train",
                str(EX / "mimicit" / "EXAMPLE_train.json"),
            ),
        ),
        (
            "import COCO-style photos",
            _syphus("import", "images", str(coco / "images"), "--corpus", c, "--id-pattern", "{stem}"),
        ),
        (
            "import video frames",
            _syphus("import", "images", str(DATA / "activitynet" / "frames"), "--corpus", c),
        ),
        (
            "import spot-the-diff pairs (named by file stem, as the SD task expects)",
            _syphus("import", "images", str(DATA / "spot_the_diff" / "resized_images"), "--corpus", c),
        ),
    ]
    # The LA step, also run first with --dry-run when a paid model is named.
    generate_la = [
        "generate",
        "--task",
        "LA",
        "--annotations",
        str(coco / "annotations" / "captions_example.json"),
        "--annotations",
        str(coco / "annotations" / "instances_example.json"),
        *gen_common,
        "--task-option",
        "image_id_pattern={stem}",
        "--limit",
        str(plan.limit_la),
    ]
    if plan.model != OFFLINE_MODEL:
        steps.append(
            (
                "estimate the cost first",
                _syphus(*generate_la, "--dry-run"),
            )
        )
    steps += [
        (
            "generate LA pairs",
            _syphus(*generate_la),
        ),
        (
            "generate DC pairs",
            _syphus(
                "generate",
                "--task",
                "DC",
                "--annotations",
                str(DATA / "activitynet" / "captions_example.json"),
                *gen_common,
                "--task-option",
                "image_id_pattern={video_id}_f{frame:03d}",
                "--limit",
                str(plan.limit_dc),
            ),
        ),
        (
            "generate SD pairs",
            _syphus(
                "generate",
                "--task",
                "SD",
                "--annotations",
                str(DATA / "spot_the_diff" / "annotations" / "train.json"),
                *gen_common,
                "--limit",
                str(plan.limit_sd),
            ),
        ),
        (
            "translate a few pairs",
            _syphus(
                "generate",
                "--task",
                "translate",
                "--annotations",
                str(EX / "mimicit" / "EXAMPLE_instructions.json"),
                *gen_common,
                "--task-option",
                "lang=zh",
                "--limit",
                str(plan.limit_translate),
            ),
        ),
        ("retrieve in-context examples", _syphus("retrieve", c, "--policy", "mixed", "--k", "2")),
        (
            "draw a small visual task the tiny Otter can learn, with a held-out split",
            _syphus(
                "shapes",
                str(shapes),
                "--train",
                str(plan.shapes_train),
                "--heldout",
                str(plan.shapes_heldout),
                "--seed",
                str(plan.shapes_seed),
            ),
        ),
        (
            "import its training split beside the generated pairs",
            _syphus(
                "import",
                "mimicit",
                str(shapes / "train" / "SHAPES_instructions.json"),
                "--corpus",
                c,
                "--images",
                str(shapes / "train" / "SHAPES.parquet"),
            ),
        ),
        ("curate", _syphus("curate", c)),
        ("export training shards", _syphus("export", "shards", "--corpus", c, "--out", str(out / "shards"))),
        ("export MIMIC-IT files", _syphus("export", "mimicit", "--corpus", c, "--out", str(out / "mimicit"))),
        (
            "train a small Otter",
            _syphus(
                "train",
                "--mix",
                str(out / "mix.yaml"),
                "--config",
                str(out / "train.yaml"),
                "--out",
                str(out / "train"),
                "--cpu",
            ),
        ),
        (
            "evaluate on the held-out shapes",
            _eval(out / "train" / "model", shapes / "heldout", out / "eval"),
        ),
        (
            "the same model and questions with blank images (the control)",
            _eval(out / "train" / "model", shapes / "heldout-blank", out / "eval-blank"),
        ),
        (
            "compare the two, question by question",
            _syphus(
                "eval",
                "compare",
                str(out / "eval" / TRAINED_SLUG),
                str(out / "eval-blank" / TRAINED_SLUG),
                "--categories",
            ),
        ),
        (
            "chat about a held-out image",
            _syphus(
                "chat",
                "--model",
                str(out / "train" / "model"),
                "--image",
                str(shapes / "heldout" / f"{plan.example.image_id}.png"),
                plan.example.question,
            ),
        ),
        (
            "write the report",
            _syphus(
                "report",
                "--corpus",
                c,
                "--train-dir",
                str(out / "train"),
                "--eval",
                str(out / "eval"),
                "--eval",
                str(out / "eval-blank"),
                "--out",
                str(out / "report.html"),
            ),
        ),
    ]
    plan.steps = steps
    return plan


def write_configs(plan: DemoPlan) -> None:
    """Copy the demo's mix and training configs (files a user can edit and reuse) into the output
    folder, with ``--train-steps`` applied to the training config."""
    plan.out.mkdir(parents=True, exist_ok=True)
    # The mix names its shards relative to its own folder (how the mix resolves paths), so the
    # pair of files can be moved or copied together and still train.
    (plan.out / "mix.yaml").write_text(
        (CONFIGS / "demo-mix.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    train = yaml.safe_load(
        (CONFIGS / ("demo-train-quick.yaml" if plan.quick else "demo-train.yaml")).read_text()
    )
    if train["max_steps"] != plan.train_steps:
        train["max_steps"] = plan.train_steps
        train["warmup_steps"] = max(1, plan.train_steps // 10)
        train["save_every"] = max(10, plan.train_steps // 2)
    (plan.out / "train.yaml").write_text(yaml.safe_dump(train, sort_keys=False))


def run_demo(plan: DemoPlan, *, echo=print) -> tuple[list[tuple[str, float, str]], str]:
    """Run every step; returns (title, seconds, status) per step and the chat step's answer."""
    # Every path the steps and configs name is absolute: nothing depends on where this was run from.
    plan.out = plan.out.expanduser().resolve()
    build_plan(plan)
    write_configs(plan)
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    timings: list[tuple[str, float, str]] = []
    chat_answer = ""
    for k, (title, cmd) in enumerate(plan.steps, 1):
        shown = " ".join(shlex.quote(a) for a in ["syphus", *cmd[3:]])
        echo(f"\n[{k}/{len(plan.steps)}] {title}\n$ {shown}")
        t0 = time.perf_counter()
        capture = title.startswith("chat")
        proc = subprocess.run(cmd, env=env, text=True, capture_output=capture)
        dt = time.perf_counter() - t0
        if capture:
            chat_answer = (proc.stdout or "").strip()
            echo(chat_answer)
            if proc.returncode != 0:
                echo(proc.stderr)
        if proc.returncode != 0:
            raise SyphusError(f"demo step {k} '{title}' failed with exit code {proc.returncode}: {shown}")
        timings.append((title, dt, "ok"))
    return timings, chat_answer


@dataclass
class HeldOutFigures:
    """The demo's evaluation: accuracy on the held-out shapes with real and with blank images."""

    real: Metric
    blank: Metric
    per_category: dict[str, tuple[Metric, Metric]]  # category -> (real, blank)
    chance: float


def held_out_figures(out: Path) -> HeldOutFigures:
    """Read the two eval steps' results (``OUT/eval`` and ``OUT/eval-blank``)."""
    from curation.shapes import chance_accuracy
    from syphus.eval.runner import read_results

    real = read_results(out / "eval" / TRAINED_SLUG)["mimicit"]
    blank = read_results(out / "eval-blank" / TRAINED_SLUG)["mimicit"]
    cats = sorted({m.category for m in real.metrics if m.category is not None})
    return HeldOutFigures(
        real.metric("accuracy"),
        blank.metric("accuracy"),
        {c: (real.metric("accuracy", c), blank.metric("accuracy", c)) for c in cats},
        chance_accuracy(),
    )


def _pct(m: Metric) -> str:
    return f"{100 * m.value:.1f}% [{100 * m.ci95[0]:.1f}, {100 * m.ci95[1]:.1f}]"


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
    train_steps: int = typer.Option(
        1500, "--train-steps", help=f"Optimizer steps for the tiny Otter (--quick: at most {QUICK_STEPS})."
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Smallest version (fewest requests, fewer shapes and steps): what the CI end-to-end test runs.",
    ),
) -> None:
    """Run import -> generate -> translate -> retrieve -> shapes -> curate -> export -> train -> eval
    -> chat -> report on the bundled examples, printing each command as it runs. Rerunning resumes."""
    from syphus.cli.ui import summary_table

    plan = DemoPlan(out=out, model=model, quick=quick, train_steps=train_steps)
    if quick:
        plan.train_steps = min(train_steps, QUICK_STEPS)
        plan.limit_la, plan.limit_dc, plan.limit_sd, plan.limit_translate = 1, 1, 1, 1
        plan.max_tokens = 256
        plan.shapes_train, plan.shapes_heldout = 1000, 120
    t0 = time.perf_counter()
    timings, answer = run_demo(plan, echo=typer.echo)
    total = time.perf_counter() - t0
    summary_table(
        "demo",
        [(t, f"{dt:.0f} s", s) for t, dt, s in timings] + [("total", f"{total / 60:.1f} min", "")],
        headers=("step", "time", "status"),
    )
    fig = held_out_figures(plan.out)
    typer.echo(
        f"\nHeld-out shapes ({fig.real.n} questions on scenes never drawn for training), exact match, 95% interval:\n"
        f"  trained Otter, real images:  {_pct(fig.real)}\n"
        f"  same model, blank images:    {_pct(fig.blank)}   (guessing: {100 * fig.chance:.1f}%)\n"
        "  per question, real vs blank: "
        + ", ".join(
            f"{c} {100 * r.value:.0f}% vs {100 * b.value:.0f}%" for c, (r, b) in fig.per_category.items()
        )
    )
    ex = plan.example
    typer.echo(
        f"\nOtter's answer about {plan.out / 'shapes' / 'heldout' / (ex.image_id + '.png')}\n"
        f"  {ex.question} -> {answer!r} (drawn: {ex.answer!r})"
    )
    typer.echo(
        "\nNote: the Otter here is tiny (0.2M parameters from random weights: a 2-layer language model with a\n"
        "512-token vocabulary, a vision encoder that sees 32x32 pixels), trained for about two minutes on CPU.\n"
        "It learns the drawn-shapes questions and nothing else: it cannot describe the photos or answer the\n"
        "generated pairs sensibly."
        + (
            "\nSmolLM2-135M wrote the generated pairs offline: expect weak text. Rerun with --model\n"
            "openai/gpt-4o-mini (and OPENAI_API_KEY) for real data."
            if model == OFFLINE_MODEL
            else ""
        )
    )
    typer.echo(f"\nreport: {(out / 'report.html').resolve()}")


def shapes_cmd(
    out: Path = typer.Argument(..., help="Folder to write (created; must be empty or an earlier output)."),
    train: int = typer.Option(2000, "--train", help="Training questions (one drawn image each)."),
    heldout: int = typer.Option(
        300, "--heldout", help="Held-out questions, on scenes never drawn for training."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes the same files."),
) -> None:
    """Write a small visual task a tiny Otter learns in minutes on CPU: drawn shapes (colour, shape,
    left/right) as MIMIC-IT files to import and train on (train/), a held-out split to evaluate
    with `syphus eval --bench mimicit` (heldout/), and the same held-out questions on blank images
    (heldout-blank/), the control that shows whether a model reads the picture."""
    from curation.shapes import write_shapes_task

    f = write_shapes_task(out, train=train, heldout=heldout, seed=seed)
    typer.echo(
        f"train: {f.n_train} questions in {f.train}\n"
        f"held out: {f.n_heldout} questions in {f.heldout} (blank-image copy: {f.heldout_blank})\n"
        f"one held-out image: {f.example_image} ({f.example.question!r} -> {f.example.answer!r})"
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
    app.command("shapes")(shapes_cmd)
