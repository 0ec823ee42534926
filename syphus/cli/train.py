"""Commands of the train stage: ``syphus train``, ``syphus chat``, ``syphus infer``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer

from trainer.net import free_port

REPORTED_ERROR = 3  # trainer.train.REPORTED_ERROR, without importing torch here


def launch_command(
    mix: Path,
    config: Path,
    out: Path,
    *,
    hostfile: Path | None,
    num_gpus: int | None,
    num_nodes: int | None,
    master_port: int | None,
    on_gpu: bool,
) -> tuple[list[str], dict[str, str]]:
    """The ``deepspeed`` launcher command line, and the environment variables it needs set."""
    exe = Path(sys.executable).with_name("deepspeed")
    cmd = [str(exe) if exe.exists() else "deepspeed"]
    env: dict[str, str] = {}
    if hostfile is not None:
        cmd += ["--hostfile", str(hostfile)]
    if num_nodes is not None:
        cmd += ["--num_nodes", str(num_nodes)]
    if not on_gpu:
        # DeepSpeed's CPU accelerator counts NUMA nodes as devices: ask for the ranks explicitly
        # (one unless --num-gpus says more), each with its share of the cores.
        env["DS_ACCELERATOR"] = "cpu"
        num_gpus = num_gpus or 1
        if "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // num_gpus))
    if num_gpus is not None:
        cmd += ["--num_gpus", str(num_gpus)]
    cmd += ["--master_port", str(master_port or free_port())]
    cmd += ["--module", "trainer.train", "--mix", str(mix), "--config", str(config), "--out", str(out)]
    return cmd, env


def train_cmd(
    mix: Path = typer.Option(..., "--mix", help="Dataset mix YAML (groups of shards / MIMIC-IT files)."),
    config: Path = typer.Option(
        ..., "--config", help="Training config YAML (model, batch, steps, ZeRO stage...)."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, logs, loss.png, final model/."),
    hostfile: Path | None = typer.Option(None, "--hostfile", help="DeepSpeed hostfile for several nodes."),
    num_gpus: int | None = typer.Option(
        None,
        "--num-gpus",
        min=1,
        help="GPUs per node (default: all visible); on CPU, training processes (default 1).",
    ),
    num_nodes: int | None = typer.Option(None, "--num-nodes", help="Use the first N hosts of the hostfile."),
    master_port: int | None = typer.Option(
        None, "--master-port", help="Rendezvous port (default: a free one)."
    ),
    cpu: bool = typer.Option(
        False, "--cpu", help="Train on CPU even if a GPU is visible (DS_ACCELERATOR=cpu)."
    ),
    print_only: bool = typer.Option(False, "--print-command", help="Print the launcher command and exit."),
) -> None:
    """Train an Otter model on a mix with DeepSpeed (resumes from OUT's last checkpoint)."""
    from schemas.errors import SyphusError
    from schemas.mix import load_mix
    from schemas.train import load_train_config

    load_mix(mix)
    cfg = load_train_config(config)
    if cfg.eval is not None:  # a wrong benchmark name or folder fails before the ranks start
        from syphus.eval.runner import training_benches

        training_benches(cfg.eval, config.resolve().parent)
    if hostfile is not None and not hostfile.is_file():
        raise SyphusError(f"{hostfile}: hostfile not found")
    on_gpu = False
    if not cpu:
        import torch

        on_gpu = torch.cuda.is_available() or hostfile is not None
        visible = torch.cuda.device_count()
        if hostfile is None and on_gpu and num_gpus is not None and num_gpus > visible:
            raise SyphusError(
                f"--num-gpus {num_gpus}: this machine has {visible} visible GPU(s); "
                "ask for fewer, or add --cpu to train with that many CPU processes"
            )
    cmd, env = launch_command(
        mix.resolve(),
        config.resolve(),
        out.resolve(),
        hostfile=hostfile,
        num_gpus=num_gpus,
        num_nodes=num_nodes,
        master_port=master_port,
        on_gpu=on_gpu,
    )
    if print_only:
        typer.echo("".join(f"{k}={v} " for k, v in env.items()) + " ".join(cmd))
        return
    from trainer.lifeline import die_with_parent, launcher_env
    from trainer.runlock import check_run_unlocked

    check_run_unlocked(out)  # fail now, not after the ranks have loaded torch
    if not on_gpu:
        typer.echo(f"training on CPU with {num_gpus or 1} process(es) (DS_ACCELERATOR=cpu)", err=True)
    env = {**os.environ, **env, **launcher_env()}
    rc = subprocess.call(cmd, env=env, preexec_fn=die_with_parent())
    if rc == REPORTED_ERROR:
        raise typer.Exit(1)  # the trainer printed the one-line error itself
    if rc != 0:
        check_run_unlocked(out)  # lost the race for the folder to another trainer: say so
        raise SyphusError(f"training exited with status {rc}; rerun the same command to resume from {out}")
    summary = out / "summary.json"
    if summary.is_file():
        from rich.console import Console
        from rich.table import Table

        data = json.loads(summary.read_text())
        table = Table(title=f"trained: {out / 'model'}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in data.items():
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        Console().print(table)


def chat_cmd(
    question: str = typer.Argument(..., help="The question to ask about the image."),
    model: Path = typer.Option(..., "--model", help="A trained model folder (OUT/model)."),
    image: Path | None = typer.Option(None, "--image", help="The image the question is about."),
    context_image: list[Path] = typer.Option(
        [], "--context-image", help="In-context example image (repeatable)."
    ),
    context_answer: list[str] = typer.Option(
        [], "--context-answer", help="Answer for each --context-image, in order."
    ),
    context_question: list[str] = typer.Option(
        [], "--context-question", help="Question for each context example (default: the same question)."
    ),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Longest answer to generate."),
    prompt_format: str = typer.Option("otter", "--prompt-format", help="otter, llama2 or plain."),
    max_pixels: int | None = typer.Option(
        None,
        "--max-pixels",
        min=1,
        help="Refuse images with more pixels (default: about 89.5 million; decompression bombs).",
    ),
) -> None:
    """Ask a trained Otter one question, optionally after in-context examples."""
    from functools import partial

    from schemas.errors import SyphusError
    from trainer.chat import Chat, ContextExample, Question
    from trainer.chat import open_image as open_any

    open_image = partial(open_any, max_pixels=max_pixels) if max_pixels else open_any

    if len(context_image) != len(context_answer):
        raise SyphusError("--context-image and --context-answer must be given the same number of times")
    if context_question and len(context_question) != len(context_image):
        raise SyphusError("--context-question must be given once per --context-image")
    questions = context_question or [question] * len(context_image)
    context = [
        ContextExample(open_image(p), q, a)
        for p, q, a in zip(context_image, questions, context_answer, strict=True)
    ]
    q = Question(question, open_image(image) if image else None, context)
    typer.echo(Chat.load(model, prompt_format).ask(q, max_new_tokens=max_new_tokens))


def infer_cmd(
    model: Path = typer.Option(..., "--model", help="A trained model folder (OUT/model)."),
    input: Path = typer.Option(
        ...,
        "--input",
        help='JSONL questions: {"id", "instruction", "image"?, "context"?: [...]} per line.',
    ),
    out: Path = typer.Option(..., "--out", help="JSONL answers to write."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="Longest answer to generate."),
    batch_size: int = typer.Option(16, "--batch-size", help="Questions per generate call."),
) -> None:
    """Answer every question of a JSONL file with a trained Otter."""
    from syphus.cli.ui import progress_bar
    from trainer.chat import infer_file, read_questions

    with progress_bar("infer", len(read_questions(input))) as bar:
        done = infer_file(model, input, out, max_new_tokens, batch_size, progress=bar)
    typer.echo(f"wrote {done} answers to {out}")


def convert_cmd(
    checkpoint: Path = typer.Argument(
        ..., help="OpenFlamingo v2 checkpoint.pt, or an Otter HF folder (luodian/OTTER-*)."
    ),
    lm: str = typer.Option(..., "--lm", help="The LM it was trained on: a local HF folder (or HF name)."),
    vision_encoder: str = typer.Option(
        ...,
        "--vision-encoder",
        help="The vision encoder it was trained on: open_clip:MODEL:WEIGHTS_FILE or hf-clip:FOLDER.",
    ),
    out: Path = typer.Option(..., "--out", help="New folder for the converted model."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Named config or OtterConfig JSON for what the weights do not show (heads, image size).",
    ),
) -> None:
    """Convert an OpenFlamingo v2 or Otter checkpoint into a model folder for train (init_from), chat
    and infer. Weights are read as tensors only; nothing in the file is executed."""
    from trainer.checkpoints import convert_checkpoint

    fields = {"lm": lm, "vision_encoder": vision_encoder, **({"name": model} if model else {})}
    report = convert_checkpoint(checkpoint, fields, out)
    kept = f", {len(report.missing)} taken from --lm/--vision-encoder" if report.missing else ""
    typer.echo(
        f"converted {checkpoint} ({report.layout} layout): {report.loaded} weights loaded{kept}; wrote {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("chat")(chat_cmd)
    app.command("infer")(infer_cmd)
    app.command("convert")(convert_cmd)
