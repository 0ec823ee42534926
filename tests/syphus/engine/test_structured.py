"""Structured output: the response_format sent where supported, the reply validated by pydantic."""

from __future__ import annotations

import json
import urllib.request

import pytest
from pydantic import BaseModel, ConfigDict

from syphus.engine.structured import parse_structured, response_format_for
from syphus.tasks.base import ResponseParseError


class QA(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instruction: str
    answer: str


class Pairs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: list[QA]


def test_response_format_only_where_the_endpoint_takes_it():
    assert response_format_for(Pairs, backend="auto", api_base=None, model="local/smollm2-135m") is None
    assert response_format_for(Pairs, backend="local", api_base="http://127.0.0.1:1/v1", model="m") is None
    assert (
        response_format_for(Pairs, backend="auto", api_base=None, model="anthropic/claude-3-5-haiku") is None
    )
    rf = response_format_for(Pairs, backend="auto", api_base="http://127.0.0.1:8000/v1", model="Qwen2-VL")
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    schema = rf["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and schema["required"] == ["pairs"]
    assert schema["$defs"]["QA"]["required"] == ["instruction", "answer"]
    assert response_format_for(Pairs, model="openai/gpt-4o-mini") is not None


@pytest.mark.parametrize(
    "text, says",
    [
        ("Q: what?\nA: that", "not JSON"),
        ('{"pairs": [{"instruction": "q"}]}', "field 'pairs.0.answer'"),
        ('{"pairs": [], "extra": 1}', "field 'extra'"),
    ],
)
def test_a_reply_that_does_not_fit_says_why(text, says):
    with pytest.raises(ResponseParseError, match=says):
        parse_structured(text, Pairs)


def test_fenced_json_is_read():
    got = parse_structured('```json\n{"pairs": [{"instruction": "q", "answer": "a"}]}\n```', Pairs)
    assert got.pairs[0].answer == "a"


def test_the_test_server_answers_json_of_the_schema(serve):
    srv = serve()
    rf = response_format_for(Pairs, api_base=srv.base_url, model="m")
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Two cats on a sofa"}],
        "response_format": rf,
    }
    req = urllib.request.Request(f"{srv.base_url}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        text = json.loads(r.read())["choices"][0]["message"]["content"]
    got = parse_structured(text, Pairs)
    assert len(got.pairs) == 2 and got.pairs[1].answer == "pairs[1].answer for: Two cats on a sofa"


def test_generate_structured_stores_the_pairs_of_the_json_reply(serve, tmp_path):
    from curation.store import Corpus
    from tests.curation.store.helpers import run_syphus
    from tests.paths import REPO

    srv = serve()
    sd = REPO / "tests" / "data" / "real" / "spot_the_diff" / "val.json"
    args = ["generate", "--task", "SD", "--annotations", sd, "--corpus", tmp_path / "c", "--model", "m",
            "--api-base", srv.base_url, "--limit", "3", "--no-progress"]  # fmt: skip
    rc, out, err = run_syphus(*args, "--structured")
    assert rc == 0, err
    with Corpus(tmp_path / "c", read_only=True) as c:
        pairs = c.pairs()
    # the server's JSON for the pairs schema: two pairs whose texts name their field
    assert len(pairs) == 6
    assert sorted({p.instruction.split(" for:")[0] for p in pairs}) == [
        "pairs[0].instruction",
        "pairs[1].instruction",
    ]
    assert srv.state.total == 3
    rc, out, err = run_syphus(*args)  # without: the text reply, under other request keys
    assert rc == 0, err
    assert srv.state.total == 6


def test_generate_structured_on_the_local_model_keeps_the_text_parser(tmp_path):
    from tests.curation.store.helpers import run_syphus
    from tests.paths import REPO

    sd = REPO / "tests" / "data" / "real" / "spot_the_diff" / "val.json"
    rc, out, err = run_syphus("generate", "--task", "SD", "--annotations", sd, "--corpus", tmp_path / "c",
                              "--limit", "2", "--structured", "--dry-run")  # fmt: skip
    assert rc == 0, err
    assert "has no structured output here" in err
