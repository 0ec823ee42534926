"""The describe task (pixels alone, no annotation) and a custom YAML task that asks for images."""

from __future__ import annotations

import json

import duckdb
import pytest
from PIL import Image

from syphus.tasks.base import Annotation, ResponseParseError
from syphus.tasks.describe import DescribeTask, ImageRecord
from syphus.testing.openai_server import OpenAIServer
from tests.syphus.engine.test_images import cli, draw


def _pairs(corpus) -> list[tuple[str, str, str, str]]:
    con = duckdb.connect(str(corpus / "corpus.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT task, source_id, instruction, answer FROM instructions ORDER BY source_id, id"
        ).fetchall()
    finally:
        con.close()


@pytest.fixture
def srv():
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def photos(tmp_path, capsys):
    imgs = tmp_path / "photos"
    draw(imgs, "cat.png", (40, 30), (200, 100, 50))
    draw(imgs / "sub", "dog.png", (30, 40), (10, 20, 30))
    Image.new("RGB", (40, 30), (200, 100, 50)).save(imgs / "cat_copy.png")  # the same pixels as cat
    corpus = tmp_path / "c"
    assert cli(capsys, "import", "images", imgs, "--corpus", corpus)[0] == 0
    return imgs, corpus


@pytest.mark.parametrize("source", ["folder", "corpus"])
def test_describe_an_image_folder_or_a_corpus_from_pixels_alone(srv, photos, capsys, tmp_path, source):
    imgs, corpus = photos
    where = imgs if source == "folder" else corpus
    code, out = cli(capsys, "generate", "--task", "describe", "--annotations", where, "--corpus", corpus,
                    "--model", "vlm", "--api-base", srv.base_url, "--no-progress", "--max-tokens", "200")  # fmt: skip
    assert code == 0, out
    # identical pixels under two ids are asked once (the query text is the same for every image)
    assert srv.state.total == 2
    seen = {(s, a) for t, s, _, a in _pairs(corpus) if a.startswith("IMAGE 1:")}
    assert seen == {
        ("cat", "IMAGE 1: 40x30 mean=(200,100,50)"),
        ("cat_copy", "IMAGE 1: 40x30 mean=(200,100,50)"),
        ("dog", "IMAGE 1: 30x40 mean=(10,20,30)"),
    }
    assert {t for t, *_ in _pairs(corpus)} == {"describe"}


def test_describe_with_a_text_only_model_names_the_task(photos, capsys):
    imgs, corpus = photos
    code, out = cli(capsys, "generate", "--task", "describe", "--annotations", imgs, "--corpus", corpus,
                    "--no-progress")  # fmt: skip
    assert code == 1
    (err,) = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert "cannot take images" in err and "--task describe" in err


def test_describe_reply_gives_the_description_and_each_pair():
    task = DescribeTask()
    ann = Annotation(id="x", image_ids=["x"], data=ImageRecord(image_id="x", source="x.png"))
    reply = (
        "Description: A brown dog sits on a green lawn beside a red ball, under a clear sky.\n"
        "It looks at the camera.\n"
        "Question: What colour is the ball?\nAnswer: Red.\n"
        "Question: Where is the dog?\nAnswer: On a lawn.\n"
    )
    pairs = task.parse(reply, ann)
    assert pairs[0].instruction in task.prompt.instructions
    assert pairs[0].answer.endswith("It looks at the camera.")
    assert [p.answer for p in pairs[1:]] == ["Red.", "On a lawn."]
    with pytest.raises(ResponseParseError):
        task.parse("I see nothing.", ann)


PROMPT = """task: SHAPES
system: You write questions about shapes.
examples:
  - user: "Shape: circle"
    assistant: "Question: What shape?\\nAnswer: A circle."
  - user: "Shape: square"
    assistant: "Question: What shape?\\nAnswer: A square."
"""

SPEC = """name: SHAPES
prompt: shapes_prompt.yaml
id_field: sid
fields:
  sid: str
  shape: str
image_ids: "{{ sid }}"
images: true
query: "Shape: {{ shape }}. Look at the attached image."
"""


def test_custom_yaml_task_can_ask_for_images(srv, photos, capsys, tmp_path):
    _, corpus = photos
    (tmp_path / "shapes_prompt.yaml").write_text(PROMPT)
    (tmp_path / "shapes.yaml").write_text(SPEC)
    (tmp_path / "shapes.jsonl").write_text(json.dumps({"sid": "dog", "shape": "blob"}) + "\n")
    code, out = cli(capsys, "generate", "--task", tmp_path / "shapes.yaml", "--annotations", tmp_path / "shapes.jsonl",
                    "--corpus", corpus, "--model", "vlm", "--api-base", srv.base_url, "--no-progress")  # fmt: skip
    assert code == 0, out
    assert ("SHAPES", "dog", "What do the images show?", "IMAGE 1: 30x40 mean=(10,20,30)") in _pairs(corpus)
