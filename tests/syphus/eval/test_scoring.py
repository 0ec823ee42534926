"""Each scorer's arithmetic against values worked out by hand, on the fixtures, with a fake model
(known replies) and a fake judge."""

from __future__ import annotations

import math

import pytest

from schemas.errors import SyphusError
from syphus.eval.benchmarks import BENCHMARKS
from syphus.eval.samples import BenchResult
from tests.paths import REAL_DATA


def samples(name, path=None):
    return list(BENCHMARKS[name].read(path or REAL_DATA / name))


def metric(result: BenchResult, name, category=None):
    return result.metric(name, category)


class FakeJudge:
    """Answers each prompt from a table keyed by sample id, and records what it was asked."""

    name = "fake-judge"

    def __init__(self, replies):
        self.replies = replies
        self.asked = []

    def __call__(self, prompts):
        self.asked += prompts
        return [self.replies.get(sid) for sid, _ in prompts]


def test_mme_acc_acc_plus_and_scores_by_hand():
    ss = samples("mme")
    replies = [
        "Yes.", "No",  # existence image 1: both right
        "yes", "Yes, there is.",  # existence image 2: second wrong
        "There are three green circles.", "No.",  # count: both right
        "I am not sure.", "no",  # code_reasoning: first unreadable
    ]  # fmt: skip
    r = BENCHMARKS["mme"].score(ss, {s.id: p for s, p in zip(ss, replies, strict=True)})
    assert metric(r, "acc", "existence").value == pytest.approx(75.0)
    assert metric(r, "acc_plus", "existence").value == pytest.approx(50.0)
    existence = metric(r, "score", "existence")
    assert (existence.value, existence.n) == (pytest.approx(125.0), 2)  # images (200 + 50) / 2
    assert existence.stderr == pytest.approx(75.0)  # sd(200, 50) / sqrt(2)
    assert metric(r, "score", "count").value == pytest.approx(200.0)
    assert metric(r, "score", "code_reasoning").value == pytest.approx(50.0)
    perception, cognition = metric(r, "perception"), metric(r, "cognition")
    assert perception.value == pytest.approx(325.0) and perception.stderr == pytest.approx(75.0)
    assert cognition.value == pytest.approx(50.0)
    assert metric(r, "accuracy").value == pytest.approx(6 / 8)
    assert any("perception sums 2 of its 10" in n for n in r.notes)
    assert any("1 of 8 predictions gave no yes or no" in n for n in r.notes)
    assert {v.unit for v in r.verdicts if v.category == "count"} == {"count/000000000003.jpg"}


def test_pope_counts_yes_with_a_period_as_yes_and_reports_the_papers_metrics():
    ss = samples("pope")
    replies = {
        "adversarial/1": "Yes.",  # TP
        "adversarial/2": "Yes, there is a dog.",  # FP
        "popular/1": "No.",  # FN
        "popular/2": "No, there is no dog.",  # TN
        "random/1": "yes",  # TP
        "random/2": "I can't tell.",  # unreadable, gold no
    }
    r = BENCHMARKS["pope"].score(ss, replies)
    assert metric(r, "accuracy").value == pytest.approx(3 / 6)
    assert metric(r, "precision").value == pytest.approx(2 / 3)
    assert metric(r, "recall").value == pytest.approx(2 / 3)
    assert metric(r, "f1").value == pytest.approx(2 / 3)
    assert metric(r, "yes_ratio").value == pytest.approx(3 / 6)
    assert metric(r, "precision", "adversarial").value == pytest.approx(0.5)
    assert metric(r, "recall", "adversarial").value == pytest.approx(1.0)
    assert metric(r, "f1", "adversarial").value == pytest.approx(2 / 3)
    assert metric(r, "yes_ratio", "adversarial").value == pytest.approx(1.0)
    assert metric(r, "recall", "popular").value == 0.0 and metric(r, "precision", "popular").n == 0
    assert metric(r, "f1", "random").value == pytest.approx(1.0)
    f1 = metric(r, "f1")
    assert f1.ci95[0] <= f1.value <= f1.ci95[1] and f1.stderr > 0


def test_pope_f1_interval_is_the_same_on_every_run():
    ss = samples("pope")
    replies = {s.id: "yes" if i % 3 else "no" for i, s in enumerate(ss)}
    a = BENCHMARKS["pope"].score(ss, replies).metric("f1")
    b = BENCHMARKS["pope"].score(ss, replies).metric("f1")
    assert (a.stderr, a.ci95) == (b.stderr, b.ci95)


def test_scienceqa_reads_a_cup_of_coffee_as_the_coffee_option_not_option_a():
    ss = samples("scienceqa_img")
    replies = {"0": "B", "1": "(B) square", "2": "The answer is C.", "3": "A cup of coffee."}
    r = BENCHMARKS["scienceqa_img"].score(ss, replies)
    acc = metric(r, "accuracy")
    assert (acc.value, acc.n) == (pytest.approx(0.75), 4)
    assert acc.stderr == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert metric(r, "accuracy", "natural science").value == 1.0
    assert metric(r, "accuracy", "language science").value == 0.0
    assert metric(r, "accuracy", "social science").value == 1.0
    assert [v.parsed for v in r.verdicts] == ["B", "B", "C", "B"]


def test_seedbench_accuracy_per_data_type_and_dimension():
    ss = samples("seedbench")
    replies = {"101669": "B", "101670": "Three", "101671": "A cat", "v1": "C"}
    r = BENCHMARKS["seedbench"].score(ss, replies)
    assert metric(r, "accuracy").value == pytest.approx(0.75)
    assert metric(r, "accuracy", "image").value == 1.0
    assert metric(r, "accuracy", "video").value == 0.0
    assert metric(r, "accuracy", "dimension: Instance Identity").value == 1.0  # "A cat" is option A's text
    assert metric(r, "accuracy", "dimension: Action Recognition").n == 1


def test_mmbench_circular_eval_needs_every_rotation_right():
    ss = samples("mmbench")
    # Question 0 right in all four rotations (in four ways of saying it); question 1 always says B,
    # which is right in one rotation and wrong in the other.
    replies = {
        "0": "A",
        "1000000": "(D)",
        "2000000": "The answer is C",
        "3000000": "red",
        "1": "B",
        "1000001": "B",
    }
    r = BENCHMARKS["mmbench"].score(ss, replies)
    circ = metric(r, "circular_accuracy")
    assert (circ.value, circ.n) == (pytest.approx(0.5), 2)
    assert metric(r, "accuracy").value == pytest.approx(5 / 6)
    assert metric(r, "circular_accuracy", "attribute_recognition").value == 1.0
    assert metric(r, "circular_accuracy", "image_topic").value == 0.0
    assert metric(r, "circular_accuracy", "L2: coarse_perception").value == 0.0


def test_mmbench_scores_the_same_from_the_vlmevalkit_tsv():
    hub = samples("mmbench")
    tsv = samples("mmbench", REAL_DATA / "vlmevalkit" / "MMBench_DEV_EN.tsv")
    replies = {s.id: "B" for s in hub}
    a, b = BENCHMARKS["mmbench"].score(hub, replies), BENCHMARKS["mmbench"].score(tsv, replies)
    assert [m.to_json() for m in a.metrics] == [m.to_json() for m in b.metrics]


def test_magnifierbench_multiple_choice():
    ss = samples("magnifierbench")
    r = BENCHMARKS["magnifierbench"].score(
        ss, {"magnifier_0": "A. red", "magnifier_1": "It is a square.", "magnifier_2": "B"}
    )
    assert metric(r, "accuracy").value == pytest.approx(2 / 3)


MATHVISTA_REPLIES = {
    "1": "The circle is red, so the answer is (B).",  # rule: letter
    "2": "I count 4 circles, maybe 5.",  # several numbers: needs the extractor
    "3": "Two of the three shapes are circles, so 2/3 of them.",  # rule: 0.666.. rounds to 0.67
    "4": "It crosses at x=0 and at y=2.",  # a list answer without brackets: needs the extractor
}


def test_mathvista_rules_first_then_the_judge_only_where_rules_fail():
    ss = samples("mathvista")
    judge = FakeJudge({"2": "4", "4": "[0, 2]"})
    r = BENCHMARKS["mathvista"].score(ss, MATHVISTA_REPLIES, judge=judge)
    assert [sid for sid, _ in judge.asked] == ["2", "4"]
    assert "It crosses at x=0" in judge.asked[1][1][0]["content"]
    by_id = {v.sample_id: v for v in r.verdicts}
    assert [by_id[i].correct for i in "1234"] == [1.0, 0.0, 1.0, 1.0]
    assert [by_id[i].judged_by for i in "1234"] == ["rule", "fake-judge", "rule", "fake-judge"]
    assert (by_id["1"].parsed, by_id["3"].parsed, by_id["4"].parsed) == ("B", "0.67", "[0,2]")
    assert metric(r, "accuracy").value == pytest.approx(0.75)
    assert metric(r, "accuracy", "skill: arithmetic reasoning").value == pytest.approx(0.5)
    assert any("2 of 4 replies needed the extractor (fake-judge" in n for n in r.notes)


def test_mathvista_without_a_judge_takes_the_last_number_and_says_so():
    ss = samples("mathvista")
    r = BENCHMARKS["mathvista"].score(ss, MATHVISTA_REPLIES)
    by_id = {v.sample_id: v for v in r.verdicts}
    assert by_id["2"].parsed == "5" and by_id["4"].parsed is None
    assert metric(r, "accuracy").value == pytest.approx(0.5)
    assert any("no judge was given" in n for n in r.notes)


def test_mathvista_multiple_choice_from_option_text_and_an_extractor_letter():
    ss = samples("mathvista")[:1]
    assert BENCHMARKS["mathvista"].score(ss, {"1": "red"}).verdicts[0].correct == 1.0
    judged = BENCHMARKS["mathvista"].score(ss, {"1": "hmm"}, judge=FakeJudge({"1": "Final answer: (B)"}))
    assert judged.verdicts[0].correct == 1.0 and judged.verdicts[0].judged_by == "fake-judge"


def test_mmvet_grades_from_the_judge_mean_per_capability():
    ss = samples("mmvet")
    judge = FakeJudge({"v1_0": "1.0", "v1_1": "0.5", "v1_2": "I would say it is fine"})
    replies = {"v1_0": "Coffee.", "v1_1": "Three circles.", "v1_2": "It carries people to space."}
    r = BENCHMARKS["mmvet"].score(ss, replies, judge=judge)
    score = metric(r, "score")
    assert score.value == pytest.approx(0.5) and score.stderr == pytest.approx(0.5 / math.sqrt(3))
    assert metric(r, "score", "capability: rec").value == pytest.approx(0.5)
    assert metric(r, "score", "capability: math").value == pytest.approx(0.5)
    assert metric(r, "score", "capability: know").value == 0.0
    prompt = dict(judge.asked)["v1_1"][0]["content"]
    assert prompt.rstrip().endswith(
        "How many circles are there, and what color are they? | 3 <AND> green | Three circles. |"
    )
    assert all(v.judged_by == "fake-judge" for v in r.verdicts)
    assert any("1 of 3 answers got no usable grade" in n for n in r.notes)


def test_mmvet_without_a_judge_is_an_error():
    with pytest.raises(SyphusError, match="mmvet is graded by an LLM"):
        BENCHMARKS["mmvet"].score(samples("mmvet"), {"v1_0": "coffee"})


def test_samples_without_a_prediction_are_left_out_and_counted():
    ss = samples("scienceqa_img")
    r = BENCHMARKS["scienceqa_img"].score(ss, {"0": "B"})
    assert metric(r, "accuracy").n == 1
    assert "3 of 4 samples had no prediction" in r.notes[0]


def test_a_perfect_and_a_blank_model_span_the_scale():
    for name in ("mme", "pope", "scienceqa_img", "seedbench", "mmbench", "magnifierbench"):
        ss = samples(name)
        perfect = BENCHMARKS[name].score(ss, {s.id: s.target for s in ss})
        blank = BENCHMARKS[name].score(ss, {s.id: "" for s in ss})
        head = "circular_accuracy" if name == "mmbench" else "accuracy"
        assert perfect.metric(head).value == 1.0, name
        assert blank.metric(head).value == 0.0, name
