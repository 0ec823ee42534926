"""Every packaged prompt file loads, and a broken one names its file and field."""

from __future__ import annotations

import pytest

from prompts import PROMPTS_DIR, load_prompt
from schemas.errors import SyphusError

PACKAGED = sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))


def test_every_task_has_a_prompt():
    assert {
        "la_conversation",
        "la_detail",
        "la_reasoning",
        "sd",
        "cgd",
        "sn",
        "dc",
        "tvc",
        "vst",
        "e4d",
        "translate",
    } <= set(PACKAGED)


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_prompt_has_two_examples(name):
    p = load_prompt(name)
    assert len(p.examples) >= 2 and p.system
    turns = p.turns()
    assert [t["role"] for t in turns[:4]] == ["user", "assistant", "user", "assistant"]


def test_translate_prompt_covers_every_language():
    p = load_prompt("translate")
    assert set(p.examples_by_lang) == {"zh", "ja", "es", "de", "fr", "ko", "ar"}


def test_bad_prompt_file_names_file_and_field(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("task: X\nsystem: hello\nexamples:\n  - user: a\n    assistant: b\n")
    with pytest.raises(SyphusError, match=r"mine\.yaml.*field 'examples'.*at least 2"):
        load_prompt(f)
    f.write_text("task: X\nsystem: [unclosed\n")
    with pytest.raises(SyphusError, match=r"mine\.yaml: line \d+, column \d+: malformed YAML"):
        load_prompt(f)
    with pytest.raises(SyphusError, match="prompt file not found"):
        load_prompt(tmp_path / "absent.yaml")
