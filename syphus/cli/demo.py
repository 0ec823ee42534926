"""``syphus demo``: the whole pipeline on the bundled examples, as a user would type it.

Each step is a real ``syphus`` command run as its own process (printed before it runs), so
the demo is also a script to copy from: import -> generate -> translate -> retrieve -> curate
-> export -> train -> chat -> report. Every step is resumable: rerunning the demo skips what
is already done. The example data and the demo's mix and training configs
(``examples/configs/demo-*.yaml``) ship inside the package (``syphus/examples`` is the
repository's ``examples/`` folder), so the demo runs the same from a clone and from a wheel.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import typer
import yaml

from schemas.errors import SyphusError

EX = Path(__file__).resolve().parent.parent / "examples"
DATA = EX / "data"
CONFIGS = EX / "configs"
OFFLINE_MODEL = "local/smollm2-135m"


@dataclass
class DemoPlan:
    out: Path
    model: str = OFFLINE_MODEL
    quick: bool = False
    train_steps: int = 30
    limit_la: int = 2
    limit_dc: int = 1
    limit_sd: int = 1
    limit_translate: int = 1
    max_tokens: int = 384
    steps: list[tuple[str, list[str]]] = field(default_factory=list)


def _syphus(*args: str) -> list[str]:
    return [sys.executable, "-m", "syphus.cli", *args]


def build_plan(plan: DemoPlan) -> DemoPlan:
    out = plan.out
    c = str(out / "corpus")
    coco = DATA / "coco"
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
            "chat about a photo",
            _syphus(
                "chat",
                "--model",
                str(out / "train" / "model"),
                "--image",
                str(coco / "images" / "shapes_002.png"),
                "Describe the picture in one sentence.",
            ),
        ),
        (
            "write the report",
            _syphus(
                "report", "--corpus", c, "--train-dir", str(out / "train"), "--out", str(out / "report.html")
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
    from syphus.cli.ui import summary_table

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
    typer.echo(f"\nOtter's answer about {DATA / 'coco' / 'images' / 'shapes_002.png'}: {answer!r}")
    if model == "local/smollm2-135m":
        typer.echo(
            "Note: everything above ran offline on very small models (SmolLM2-135M wrote the pairs; a small Otter\n"
            "trained for a few minutes on CPU answered). Expect weak, sometimes wrong text: the point is the\n"
            "pipeline, not the quality. Rerun with --model openai/gpt-4o-mini (and OPENAI_API_KEY) for real data."
        )
    typer.echo(f"\nreport: {(out / 'report.html').resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
