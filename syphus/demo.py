"""The whole pipeline on the bundled examples, as a user would type it.

Each step is a real ``syphus`` command run as its own process (printed before it runs), so
the demo is also a script to copy from: import -> generate -> translate -> retrieve -> curate
-> export -> train -> chat -> report. Every step is resumable: rerunning the demo skips what
is already done.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from schemas.errors import SyphusError

REPO = Path(__file__).resolve().parent.parent
EX = REPO / "examples"
DATA = EX / "data"
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
    """The mix and training config the demo trains with (files a user can edit and reuse)."""
    plan.out.mkdir(parents=True, exist_ok=True)
    # Relative to the mix file's own folder (how the mix resolves paths), so the pair of files can
    # be moved or copied together and still train.
    mix = {"IMAGE_TEXT": {"demo": {"shards_path": "shards", "num_samples": -1}}}
    (plan.out / "mix.yaml").write_text(yaml.safe_dump(mix, sort_keys=False))
    model = (
        {"name": "tiny"}
        if plan.quick
        else {
            # Real pretrained parts that ship in PyPI packages: EfficientNet-Lite0 (ImageNet) and
            # SmolLM2-135M-Instruct, both frozen; only the resampler, the cross-attention blocks and
            # the embeddings learn.
            "vision_encoder": "efficientnet-lite0",
            "lm": "smollm2",
            "cross_attn_every_n_layers": 6,
            "perceiver_depth": 2,
            "perceiver_heads": 4,
            "perceiver_dim_head": 32,
            "perceiver_num_latents": 16,
            "xattn_heads": 4,
            "xattn_dim_head": 32,
            "ff_mult": 2,
            "image_size": 224,
        }
    )
    train = {
        "model": model,
        "batch_size": 4,
        "grad_accum": 1,
        "max_steps": plan.train_steps,
        "lr": 3e-4,
        "warmup_steps": max(1, plan.train_steps // 10),
        "zero_stage": 0,  # one CPU process: nothing to partition, ZeRO-2 would only add copies
        "max_length": 256,
        "save_every": max(10, plan.train_steps // 2),
        "seed": 0,
    }
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
