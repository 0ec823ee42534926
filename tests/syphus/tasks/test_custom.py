"""A custom task defined by YAML alone: fields, a Jinja query template and a prompt file."""

from __future__ import annotations

import json

import pytest

from schemas.errors import SyphusError
from syphus.tasks.base import ResponseParseError
from syphus.tasks.registry import get_task

PROMPT = """task: PETS
system: You describe pet photos.
examples:
  - user: "Pet: Rex (dog)"
    assistant: "Question: What animal is Rex?\\nAnswer: A dog."
  - user: "Pet: Tom (cat)"
    assistant: "Question: What animal is Tom?\\nAnswer: A cat."
"""

SPEC = """name: PETS
prompt: pets_prompt.yaml
format: json
records: pets
id_field: pet_id
fields:
  pet_id: int
  name: str
  kind: str
  toys: list?
image_ids: "PETS_IMG_{{ pet_id }}_a PETS_IMG_{{ pet_id }}_b"
query: |
  Pet: {{ name }} ({{ kind }})
  {% if toys %}
  Toys: {{ toys | join(', ') }}
  {% endif %}
"""


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "pets_prompt.yaml").write_text(PROMPT)
    (tmp_path / "pets.yaml").write_text(SPEC)
    (tmp_path / "pets.json").write_text(
        json.dumps(
            {
                "pets": [
                    {"pet_id": 7, "name": "Bella", "kind": "dog", "toys": ["ball", "rope"]},
                    {"pet_id": 8, "name": "Milo", "kind": "cat"},
                ]
            }
        )
    )
    return tmp_path


def test_custom_task_reads_renders_parses(spec):
    task = get_task(str(spec / "pets.yaml"))
    assert task.name == "PETS"
    anns = list(task.read([spec / "pets.json"]))
    assert [a.id for a in anns] == ["7", "8"]
    assert anns[0].image_ids == ["PETS_IMG_7_a", "PETS_IMG_7_b"]
    msgs = task.messages(anns[0])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[-1]["content"] == "Pet: Bella (dog)\nToys: ball, rope"
    assert task.render_query(anns[1]) == "Pet: Milo (cat)"
    pairs = task.parse("Question: What toys does Bella have?\nAnswer: A ball and a rope.", anns[0])
    assert pairs[0].answer == "A ball and a rope."
    with pytest.raises(ResponseParseError):
        task.parse("Bella is a good dog.", anns[0])


def test_custom_record_errors_name_file_record_field(spec):
    (spec / "pets.json").write_text(
        json.dumps({"pets": [{"pet_id": "seven", "name": "Bella", "kind": "dog"}]})
    )
    with pytest.raises(SyphusError, match=r"pets\.json: record 0: field 'pet_id'"):
        list(get_task(str(spec / "pets.yaml")).read([spec / "pets.json"]))
    (spec / "pets.json").write_text(json.dumps({"animals": []}))
    with pytest.raises(SyphusError, match=r"pets\.json: field 'pets' missing"):
        list(get_task(str(spec / "pets.yaml")).read([spec / "pets.json"]))


@pytest.mark.parametrize(
    "change, pattern",
    [
        (
            lambda s: s.replace("kind: str", "kind: string"),
            r"pets\.yaml: field 'fields'.*unknown type 'string'",
        ),
        (
            lambda s: s.replace("id_field: pet_id", "id_field: uid"),
            r"field 'id_field': 'uid' is not one of 'fields'",
        ),
        (lambda s: s.replace("{{ name }}", "{{ name }"), r"pets\.yaml: template line 1"),
        (lambda s: s + "colour: red\n", r"pets\.yaml: field 'colour'"),
    ],
)
def test_custom_spec_errors(spec, change, pattern):
    (spec / "pets.yaml").write_text(change(SPEC))
    with pytest.raises(SyphusError, match=pattern):
        get_task(str(spec / "pets.yaml"))


def test_template_typo_names_record(spec):
    (spec / "pets.yaml").write_text(SPEC.replace("{{ kind }}", "{{ knd }}"))
    task = get_task(str(spec / "pets.yaml"))
    ann = next(iter(task.read([spec / "pets.json"])))
    with pytest.raises(SyphusError, match=r"pets\.yaml: query template, record '7': 'knd' is undefined"):
        task.messages(ann)
