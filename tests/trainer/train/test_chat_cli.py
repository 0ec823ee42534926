"""``syphus chat`` and ``syphus infer`` through the command line, on a saved tiny Otter.

The tiny model is untrained, so its answers are noise; what is checked is that the commands
load a saved folder, feed images and in-context examples, agree with the library API, write
every answer, and turn bad input into one-line errors.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from .helpers import run_cli


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from trainer.model.modeling_otter import build_otter, save_otter

    folder = tmp_path_factory.mktemp("otter") / "model"
    model, tok, ip = build_otter("tiny")
    save_otter(folder, model, tok, ip)
    return folder


@pytest.fixture()
def images(tmp_path):
    paths = {}
    for name, colour in [("red", (220, 30, 30)), ("blue", (30, 30, 220)), ("green", (30, 200, 30))]:
        p = tmp_path / f"{name}.png"
        Image.new("RGB", (32, 32), colour).save(p)
        paths[name] = p
    return paths


def test_chat_answers_like_the_library(model_dir, images, capsys):
    from trainer.chat import Chat, ContextExample, Question, open_image

    argv = ["chat", "--model", str(model_dir), "--image", str(images["red"]), "--max-new-tokens", "6"]
    code, out, err = run_cli([*argv, "What colour is it?"], capsys)
    assert code == 0, err
    chat = Chat.load(model_dir)
    expected = chat.ask(Question("What colour is it?", open_image(images["red"])), max_new_tokens=6)
    assert out.rstrip("\n") == expected

    # two in-context examples, each with its own image and answer, before the question
    ctx = ["--context-image", str(images["blue"]), "--context-answer", "blue"]
    ctx += ["--context-image", str(images["green"]), "--context-answer", "green"]
    code, out, err = run_cli([*argv, *ctx, "What colour is it?"], capsys)
    assert code == 0, err
    q = Question(
        "What colour is it?",
        open_image(images["red"]),
        [
            ContextExample(open_image(images["blue"]), "What colour is it?", "blue"),
            ContextExample(open_image(images["green"]), "What colour is it?", "green"),
        ],
    )
    assert out.rstrip("\n") == chat.ask(q, max_new_tokens=6)

    # a question without any image is allowed (text-only)
    code, _, err = run_cli(["chat", "--model", str(model_dir), "--max-new-tokens", "3", "Hello?"], capsys)
    assert code == 0, err


def test_chat_bad_input_is_one_line(model_dir, images, tmp_path, capsys):
    cases = [
        (["chat", "--model", str(tmp_path / "nope"), "q"], "model folder not found"),
        (
            ["chat", "--model", str(model_dir), "--image", str(tmp_path / "missing.png"), "q"],
            "image not found",
        ),
        (
            ["chat", "--model", str(model_dir), "--context-image", str(images["red"]), "q"],
            "same number of times",
        ),
    ]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    cases.append((["chat", "--model", str(model_dir), "--image", str(bad), "q"], "cannot decode image"))
    for argv, message in cases:
        code, out, err = run_cli(argv, capsys)
        assert code == 1, argv
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_infer_writes_one_answer_per_question(model_dir, images, tmp_path, capsys):
    from trainer.chat import Chat, Question, open_image

    questions = [
        {"id": "q1", "instruction": "What colour is it?", "image": "red.png"},
        {
            "id": "q2",
            "instruction": "What colour is it?",
            "image": "red.png",
            "context": [{"image": "blue.png", "answer": "blue"}],
        },
        {"id": "q3", "instruction": "Say hello."},
    ]
    src = images["red"].parent / "questions.jsonl"
    src.write_text("\n".join(json.dumps(q) for q in questions) + "\n\n")
    out_path = tmp_path / "answers.jsonl"
    argv = ["infer", "--model", str(model_dir), "--input", str(src), "--out", str(out_path)]
    code, out, err = run_cli([*argv, "--max-new-tokens", "5", "--batch-size", "1"], capsys)
    assert code == 0, err
    assert "wrote 3 answers" in out
    rows = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q1", "q2", "q3"]
    assert all(isinstance(r["answer"], str) for r in rows)
    assert not (tmp_path / "answers.jsonl.partial").exists()
    first = Chat.load(model_dir).ask(
        Question("What colour is it?", open_image(images["red"])), max_new_tokens=5
    )
    assert rows[0]["answer"] == first

    # batched: same count and ids (left padding may change greedy noise, not the bookkeeping)
    code, _, err = run_cli([*argv, "--max-new-tokens", "5", "--batch-size", "3"], capsys)
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out_path.read_text().splitlines()] == ["q1", "q2", "q3"]


def test_infer_bad_input_names_the_line(model_dir, images, tmp_path, capsys):
    src = images["red"].parent / "bad.jsonl"
    out_path = tmp_path / "answers.jsonl"
    out_path.write_text("kept\n")
    for text, message in [
        ('{"instruction": "ok"}\n{not json\n', "line 2: malformed JSON"),
        ('{"id": 1}\n', "line 1: field 'instruction'"),
        ('{"instruction": "q", "image": "missing.png"}\n', "missing.png: image not found"),
        ('{"instruction": "q", "context": [{"image": "blue.png"}]}\n', "line 1: context[0].answer"),
    ]:
        src.write_text(text)
        code, _, err = run_cli(
            ["infer", "--model", str(model_dir), "--input", str(src), "--out", str(out_path)], capsys
        )
        assert code == 1
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert out_path.read_text() == "kept\n"  # nothing already written is touched


def test_chat_refuses_a_pixel_bomb_before_decoding_it(model_dir, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 9000)).save(bomb)  # 108 M pixels in about 13 kB
    assert bomb.stat().st_size < 100_000
    code, out, err = run_cli(["chat", "--model", str(model_dir), "--image", str(bomb), "q"], capsys)
    assert code == 1 and out == ""
    assert f"{bomb}: image is 12000x9000 = 108000000 pixels, over the limit" in err
    assert len(err.strip().splitlines()) == 1, err
    # the limit is the user's to raise; a small one refuses an ordinary image the same way
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 64)).save(small)
    code, _, err = run_cli(
        ["chat", "--model", str(model_dir), "--image", str(small), "--max-pixels", "1000", "q"], capsys
    )
    assert code == 1 and "64x64 = 4096 pixels, over the limit of 1000" in err


def test_chat_never_unpickles_weights(model_dir, tmp_path, capsys):
    """A model folder whose weights are a pickle (.bin) instead of safetensors: one line naming the
    folder and the file, and the pickle's payload never runs."""
    import os
    import pickle
    import shutil

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    folder = tmp_path / "pickled"
    shutil.copytree(model_dir, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": Payload()}))
    for argv in (["chat", "--model", str(folder), "q"], ["infer", "--model", str(folder)]):
        if argv[0] == "infer":
            src = tmp_path / "q.jsonl"
            src.write_text('{"instruction": "q"}\n')
            argv += ["--input", str(src), "--out", str(tmp_path / "a.jsonl")]
        code, _, err = run_cli(argv, capsys)
        assert code == 1
        assert f"{folder}: no model.safetensors (found pytorch_model.bin" in err
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("config", "cannot load the model's config or weights (OSError"),
        ("weights", "cannot load the model's config or weights (SafetensorError"),
        ("tokenizer", "cannot load the tokenizer"),
    ],
)
def test_chat_on_a_damaged_model_folder_is_one_line(model_dir, tmp_path, capsys, damage, message):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(model_dir, folder)
    if damage == "config":
        (folder / "config.json").write_text("{not json")
    elif damage == "weights":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short
    else:
        (folder / "tokenizer.json").unlink()
        (folder / "tokenizer_config.json").unlink()
    code, out, err = run_cli(["chat", "--model", str(folder), "q"], capsys)
    assert code == 1 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [line for line in errors if f"{folder}: {message}" in line] and len(errors) == 1, err
    assert "Traceback" not in err
