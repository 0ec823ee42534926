"""The reply parser against what small and large LLMs actually write."""

from __future__ import annotations

import pytest

from syphus.tasks.base import ResponseParseError
from syphus.tasks.parsing import parse_pairs

REPLIES = {
    "labels": (
        "Question: What is the man doing?\nAnswer: He is riding a bicycle.\n"
        "Question: How many cars are there?\nAnswer: Two cars are parked nearby.",
        2,
    ),
    "preamble_bold_numbered_epilogue": (
        "Sure! Here are some question-answer pairs about the image:\n\n"
        "1. **Question:** What is the man doing?\n   **Answer:** He is riding a bicycle.\n\n"
        "2. **Question:** What colour is his jacket?\n   **Answer:** It is red.\n\n"
        "I hope this helps! Let me know if you need more.",
        2,
    ),
    "user_gpt": "User: Where is the dog?\nGPT: It is lying on the couch.\nUser: Is it asleep?\nGPT: Yes, it seems to be napping.",
    "q_a_numbered_labels": "Q1: What happens first?\nA1: She whisks the eggs.\nQ2: What happens last?\nA2: She serves the pancakes.",
    "json_fenced": (
        'Here you go:\n```json\n[{"question": "What changed?", "answer": "The white car is gone."},\n'
        ' {"question": "Who appeared?", "answer": "A person on the sidewalk."}]\n```'
    ),
    "json_object_pairs": '{"pairs": [{"instruction": "Where are my keys?", "response": "In your jacket pocket."}]}',
    "json_chat": '[{"from": "human", "value": "What is on the desk?"}, {"from": "gpt", "value": "A monitor and a lamp."}]',
    "numbered_questions": "1. What is the man doing? He is riding a bike.\n2. Where is he?\n   On a city street.",
    "human_assistant_multiline": (
        "Human: Describe what happens in the video.\nAssistant: First she mixes the batter.\n"
        "Then she cooks the pancakes.\n\nFinally she serves them.\n"
        "Human: How long is the video?\nAssistant: About two minutes."
    ),
    "one_line_pairs": (
        "Question: What changed? Answer: The white car is gone.\nQuestion: Who came? Answer: A man with a dog.",
        2,
    ),
    "translated_labels": "问题：图片中的男子在做什么？\n回答：他正骑着自行车。",
}


def _expected(value):
    return value if isinstance(value, tuple) else (value, None)


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_realistic_replies_parse(name):
    text, count = _expected(REPLIES[name])
    pairs = parse_pairs(text)
    assert pairs, name
    if count is not None:
        assert len(pairs) == count
    for p in pairs:
        assert p.instruction and p.answer
        assert "**" not in p.instruction + p.answer
        assert not p.instruction.lower().startswith(("question", "user", "q1"))


def test_labels_content_is_exact():
    pairs = parse_pairs(REPLIES["preamble_bold_numbered_epilogue"][0])
    assert pairs[0].instruction == "What is the man doing?"
    assert pairs[0].answer == "He is riding a bicycle."
    assert pairs[1].answer == "It is red."  # the closing "I hope this helps" is not part of it


def test_one_line_pairs_split_but_plan_a_is_not_a_label():
    pairs = parse_pairs(REPLIES["one_line_pairs"][0])
    assert (pairs[0].instruction, pairs[0].answer) == ("What changed?", "The white car is gone.")
    pairs = parse_pairs(
        "Question: Which plan is best?\nAnswer: Plan A: leave early, because traffic grows later."
    )
    assert pairs[0].answer == "Plan A: leave early, because traffic grows later."


def test_plural_labels_small_models_write():
    pairs = parse_pairs("Questions: Where did the ball stop?\nAnswers: Near the right edge.")
    assert (pairs[0].instruction, pairs[0].answer) == ("Where did the ball stop?", "Near the right edge.")


def test_multiline_answer_kept():
    pairs = parse_pairs(REPLIES["human_assistant_multiline"])
    assert pairs[0].answer.startswith("First she mixes")
    assert "Finally she serves them." in pairs[0].answer
    assert pairs[1].answer == "About two minutes."


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty reply"),
        ("   \n", "empty reply"),
        ("I'm sorry, but I can't help with that request.", "model refused"),
        ("The image shows a man riding a bicycle on a sunny day.", "no question/answer pairs"),
        ("Question: What is he doing?\nAnswer: Riding.\nQuestion: Where is he going?", "no answer"),
        ("Question: Why?\nQuestion: How?\nAnswer: Because.", "has no answer before the next question"),
        ('{"summary": "a man on a bike"}', "JSON reply holds no question/answer list"),
        ('[{"title": "x", "body": "y"}]', "no question/answer keys"),
        ("Question: Is it red?\nAnswer: is it red?", "repeats the question"),
        ("Answer: It is red.", "no question/answer pairs"),
    ],
)
def test_garbage_is_rejected_with_reason(text, reason):
    with pytest.raises(ResponseParseError, match=reason):
        parse_pairs(text)


def test_pair_count_limits():
    many = "\n".join(f"Question: Q{i} what?\nAnswer: A{i}." for i in range(8))
    with pytest.raises(ResponseParseError, match="more than the 5 allowed"):
        parse_pairs(many, max_pairs=5)
    with pytest.raises(ResponseParseError, match="fewer than the 3 required"):
        parse_pairs("Question: What?\nAnswer: That.", min_pairs=3)


def test_small_model_loops_are_handled():
    # Real SmolLM2-135M output shapes: the same pair over and over, and a line looping in an answer.
    repeated = "Question: How many people are there?\nAnswer: There are two people.\n" * 3
    assert len(parse_pairs(repeated)) == 1
    looping = (
        "Question: What changed?\nAnswer: The car left.\n" + "- The person is walking on the sidewalk.\n" * 4
    )
    with pytest.raises(ResponseParseError, match="degenerate loop"):
        parse_pairs(looping)
