"""Each benchmark's scoring rule, with its source, turning predictions into verdicts and metrics.

Scale: accuracy-like metrics are fractions in [0, 1]; MME's acc, acc+ and scores are in MME's own
points (percent per category, category score = acc + acc+ out of 200, totals are sums). Every metric
carries its standard error and 95% interval (see stats.py); `n` says how many units it counts.

Samples with no prediction are left out of the scores (and counted in the notes), so a partial run
scores what it answered; a prediction that parses to nothing is scored wrong.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable

from schemas.errors import SyphusError
from syphus.eval.answers import normalise_number, numbers_in, parse_choice, parse_number, parse_yes_no
from syphus.eval.samples import BenchResult, Judge, Metric, Sample, Verdict
from syphus.eval.stats import (
    bootstrap_counts,
    mean_metric,
    paired_difference,
    proportion,
    sum_metric,
)

# MME's two groups of categories, as the MME authors' eval_tool/calculation.py and lmms-eval's
# tasks/mme/utils.py list them (perception: 10 categories, cognition: 4).
MME_PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def judge_name(judge: Judge | None) -> str:
    """The judge model a judge callable names (its `.name` or `.model`), else "judge"."""
    return str(getattr(judge, "name", None) or getattr(judge, "model", None) or "judge")


def _answered(
    samples: list[Sample], predictions: dict[str, str]
) -> tuple[list[tuple[Sample, str]], list[str]]:
    pairs, notes = [], []
    missing = 0
    for s in samples:
        p = predictions.get(s.id)
        if p is None:
            missing += 1
            continue
        pairs.append((s, str(p)))
    if missing:
        notes.append(f"{missing} of {len(samples)} samples had no prediction and are not scored")
    return pairs, notes


def _grouped(
    name: str,
    verdicts: list[Verdict],
    value: Callable[[list[Verdict]], Metric],
    *,
    extra: dict[str, list[str]] | None = None,
) -> list[Metric]:
    """`value` over all verdicts, then per category, then per extra label (a sample may have several)."""
    out = [value(verdicts)]
    by_cat: dict[str, list[Verdict]] = defaultdict(list)
    for v in verdicts:
        by_cat[v.category].append(v)
        for label in (extra or {}).get(v.sample_id, ()):
            by_cat[label].append(v)
    if len(by_cat) > 1 or extra:
        for cat in sorted(by_cat):
            m = value(by_cat[cat])
            m.category = cat
            out.append(m)
    for m in out:
        m.name = name
    return out


def accuracy_metrics(verdicts: list[Verdict], *, extra: dict[str, list[str]] | None = None) -> list[Metric]:
    """`accuracy` (binomial) overall, per category and per extra label."""
    return _grouped(
        "accuracy", verdicts, lambda vs: proportion("accuracy", [v.correct for v in vs]), extra=extra
    )


def _unparsed_note(verdicts: list[Verdict], what: str) -> list[str]:
    k = sum(1 for v in verdicts if v.parsed is None)
    return [f"{k} of {len(verdicts)} predictions gave no {what} and count as wrong"] if k else []


# ---------------------------------------------------------------- MME


def score_mme(samples: list[Sample], predictions: dict[str, str], bench: str = "mme") -> BenchResult:
    """MME (Fu et al. 2023, arXiv 2306.13394; the authors' eval_tool/calculation.py): yes/no answers;
    per category `acc` (percent of questions right) and `acc_plus` (percent of images with both of
    their questions right), category `score` = acc + acc+ (0-200); `perception` = sum of the 10
    perception category scores (max 2000) and `cognition` = sum of the 4 cognition ones (max 800).

    The unit of acc+ and of the score is the image: their standard errors are over images
    (score: sd of per-image 100*(mean + all-right) / sqrt(images)); totals add category variances."""
    pairs, notes = _answered(samples, predictions)
    verdicts = []
    for s, p in pairs:
        parsed = parse_yes_no(p)
        verdicts.append(
            Verdict(
                s.id, p, parsed, s.target, float(parsed == s.target), s.category, "rule", s.meta.get("image")
            )
        )
    notes += _unparsed_note(verdicts, "yes or no")
    metrics = [proportion("accuracy", [v.correct for v in verdicts])]
    by_cat: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for v in verdicts:
        by_cat[v.category][v.unit or v.sample_id].append(v.correct)
    scores: dict[str, Metric] = {}
    odd = 0
    for cat in sorted(by_cat):
        images = by_cat[cat]
        odd += sum(1 for c in images.values() if len(c) != 2)
        metrics.append(
            proportion("acc", [c for cs in images.values() for c in cs], category=cat, scale=100.0)
        )
        metrics.append(
            proportion(
                "acc_plus",
                [float(all(c == 1.0 for c in cs)) for cs in images.values()],
                category=cat,
                scale=100.0,
            )
        )
        scores[cat] = mean_metric("score", list(_mme_image_scores(images).values()), category=cat)
        metrics.append(scores[cat])
    for total, cats in (("perception", MME_PERCEPTION), ("cognition", MME_COGNITION)):
        present = [scores[c] for c in cats if c in scores]
        if present:
            metrics.append(sum_metric(total, present))
            if len(present) < len(cats):
                notes.append(
                    f"{total} sums {len(present)} of its {len(cats)} categories (the others had no samples)"
                )
    unknown = sorted(set(scores) - set(MME_PERCEPTION) - set(MME_COGNITION))
    if unknown:
        notes.append(
            f"categories outside MME's perception and cognition lists, in no total: {', '.join(unknown)}"
        )
    if odd:
        notes.append(
            f"{odd} images had other than 2 questions scored (acc+ needs every question of an image right)"
        )
    return BenchResult(bench, metrics, verdicts, notes)


def _mme_image_scores(images: dict[str, list[float]]) -> dict[str, float]:
    return {
        u: 100.0 * sum(cs) / len(cs) + 100.0 * float(all(c == 1.0 for c in cs)) for u, cs in images.items()
    }


def paired_mme(a: list[Verdict], b: list[Verdict]) -> list[Metric]:
    """Paired differences of MME's category scores over the images both results scored, and of the
    perception and cognition totals (sums of the category differences)."""
    out, per_cat = [], {}
    for cat in sorted({v.category for v in a} & {v.category for v in b}):
        ua, ub = _mme_units(a, cat), _mme_units(b, cat)
        shared = set(ua) & set(ub)
        ua = {u: c for u, c in ua.items() if u in shared and len(c) == len(ub[u])}
        ub = {u: ub[u] for u in ua}
        per_cat[cat] = paired_difference("score", _mme_image_scores(ua), _mme_image_scores(ub), category=cat)
        out.append(per_cat[cat])
    for total, cats in (("perception", MME_PERCEPTION), ("cognition", MME_COGNITION)):
        present = [per_cat[c] for c in cats if c in per_cat]
        if present:
            out.append(sum_metric(total, present))
    return out


def _mme_units(verdicts: list[Verdict], cat: str) -> dict[str, list[float]]:
    units: dict[str, list[float]] = defaultdict(list)
    for v in sorted(verdicts, key=lambda v: v.sample_id):
        if v.category == cat:
            units[v.unit or v.sample_id].append(v.correct)
    return units


# ---------------------------------------------------------------- POPE


def _f1(c):
    """F1 from counts [..., TP, FP, FN, TN, unparsed]; works on one vector or a [rounds, 5] array."""
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    denom = 2 * tp + fp + fn
    safe = denom + (denom == 0)
    return (2 * tp / safe) * (denom > 0)


def score_pope(samples: list[Sample], predictions: dict[str, str], bench: str = "pope") -> BenchResult:
    """POPE (Li et al. 2023, arXiv 2305.10355; the authors' evaluate.py): accuracy, precision, recall
    and F1 of "yes" as the positive class, and the yes-ratio of the predictions, overall and per
    subset (adversarial, popular, random).

    A prediction the parser cannot read as yes or no is wrong for accuracy and counts as "not yes"
    (it can never be a true or false positive). lmms-eval's `pope_yes_ratio` is the share of gold
    answers that are yes; this is the paper's: the share of predictions that are yes. F1's interval
    is a bootstrap over samples."""
    pairs, notes = _answered(samples, predictions)
    verdicts = []
    for s, p in pairs:
        parsed = parse_yes_no(p)
        verdicts.append(Verdict(s.id, p, parsed, s.target, float(parsed == s.target), s.category, "rule"))
    notes += _unparsed_note(verdicts, "yes or no")
    metrics: list[Metric] = []
    groups: dict[str | None, list[Verdict]] = {None: verdicts}
    for v in verdicts:
        groups.setdefault(v.category, []).append(v)
    for cat, vs in groups.items():
        said_yes = [v for v in vs if v.parsed == "yes"]
        gold_yes = [v for v in vs if v.target == "yes"]
        counts = [
            sum(1 for v in vs if v.target == "yes" and v.parsed == "yes"),
            sum(1 for v in vs if v.target == "no" and v.parsed == "yes"),
            sum(1 for v in vs if v.target == "yes" and v.parsed != "yes"),
            sum(1 for v in vs if v.target == "no" and v.parsed == "no"),
            sum(1 for v in vs if v.target == "no" and v.parsed is None),
        ]
        metrics += [
            proportion("accuracy", [v.correct for v in vs], category=cat),
            proportion("precision", [float(v.target == "yes") for v in said_yes], category=cat),
            proportion("recall", [float(v.parsed == "yes") for v in gold_yes], category=cat),
            bootstrap_counts("f1", counts, _f1, category=cat),
            proportion("yes_ratio", [float(v.parsed == "yes") for v in vs], category=cat),
        ]
    return BenchResult(bench, metrics, verdicts, notes)


# ---------------------------------------------------------------- multiple choice


def choice_verdicts(pairs: Iterable[tuple[Sample, str]]) -> list[Verdict]:
    """Option-letter verdicts with the lenient parser; options missing from a sample allow A-D."""
    out = []
    for s, p in pairs:
        parsed = parse_choice(p, s.options or None)
        out.append(
            Verdict(
                s.id, p, parsed, s.target, float(parsed == s.target), s.category, "rule", s.meta.get("group")
            )
        )
    return out


def score_choice(
    samples: list[Sample], predictions: dict[str, str], bench: str, *, extra_key: str | None = None
) -> BenchResult:
    """Multiple choice scored by the option letter: ScienceQA (Lu et al. 2022; lmms-eval
    tasks/scienceqa), SEED-Bench (Li et al. 2023, arXiv 2307.16125; per data type and per evaluation
    dimension), MagnifierBench (Li et al. 2023, OtterHD arXiv 2311.04219; Otter's
    pipeline/benchmarks/datasets/magnifierbench.py, its multiple-choice accuracy).
    `extra_key` names a sample meta list of further labels to report accuracy for."""
    pairs, notes = _answered(samples, predictions)
    verdicts = choice_verdicts(pairs)
    notes += _unparsed_note(verdicts, "option")
    extra = {s.id: list(s.meta.get(extra_key) or []) for s, _ in pairs} if extra_key else None
    return BenchResult(bench, accuracy_metrics(verdicts, extra=extra), verdicts, notes)


def score_circular(samples: list[Sample], predictions: dict[str, str], bench: str = "mmbench") -> BenchResult:
    """MMBench CircularEval (Liu et al. 2023, arXiv 2307.06281; VLMEvalKit
    dataset/utils/multiple_choice.py mcq_circular_eval, lmms-eval tasks/mmbench/mmbench_evals.py):
    the distributed file holds each question once per rotation of its options, rows of one question
    sharing `index % 1_000_000` (or VLMEvalKit's `g_index`); a question counts as right only if
    every one of its rotations is answered right. `circular_accuracy` is over questions (the unit is
    the group; per category and per L2 category too); `accuracy` is the plain per-row rate.

    The official tools ask a GPT model to match a reply that names no letter to an option; here the
    parser's whole-word option-text matching does that, and what it cannot read is wrong."""
    pairs, notes = _answered(samples, predictions)
    verdicts = choice_verdicts(pairs)
    notes += _unparsed_note(verdicts, "option")
    l2 = {s.id: s.meta.get("l2_category") for s, _ in pairs}
    metrics = [proportion("accuracy", [v.correct for v in verdicts])]
    groups = _circular_groups(verdicts)
    labels: dict[str, list[str]] = {}
    main_cat: dict[str, str] = {}
    for g, vs in groups.items():
        main_cat[g] = vs[0].category
        labels[g] = [x for x in {l2.get(v.sample_id) for v in vs} if x]
    units = [(g, float(all(v.correct == 1.0 for v in vs))) for g, vs in groups.items()]

    def circ(us):
        return proportion("circular_accuracy", [x for _, x in us])

    metrics.append(circ(units))
    by_cat: dict[str, list] = defaultdict(list)
    for g, x in units:
        by_cat[main_cat[g]].append((g, x))
        for label in labels[g]:
            by_cat[f"L2: {label}"].append((g, x))
    for cat in sorted(by_cat):
        m = circ(by_cat[cat])
        m.category = cat
        metrics.append(m)
    single = sum(1 for vs in groups.values() if len(vs) == 1)
    if single:
        notes.append(f"{single} of {len(groups)} questions had a single rotation scored")
    return BenchResult(bench, metrics, verdicts, notes)


def _circular_groups(verdicts: list[Verdict]) -> dict[str, list[Verdict]]:
    groups: dict[str, list[Verdict]] = defaultdict(list)
    for v in verdicts:
        groups[v.unit or v.sample_id].append(v)
    for vs in groups.values():
        vs.sort(key=lambda v: (v.sample_id != v.unit, v.sample_id))  # the main row (index == group) first
    return groups


def paired_circular(a: list[Verdict], b: list[Verdict]) -> list[Metric]:
    """Paired difference of circular accuracy over the questions (groups) both results scored."""
    ga, gb = _circular_groups(a), _circular_groups(b)
    ua = {g: float(all(v.correct == 1.0 for v in vs)) for g, vs in ga.items()}
    ub = {g: float(all(v.correct == 1.0 for v in vs)) for g, vs in gb.items()}
    return [paired_difference("circular_accuracy", ua, ub)]


# ---------------------------------------------------------------- MathVista

# The extractor's instruction and examples (written for this project; the idea is MathVista's
# evaluation/extract_answer.py: an LLM reads the reply and writes down only its final answer).
MATHVISTA_EXTRACTOR = """You read a model's reply to a math question about a picture and write down only the final answer the reply gives, with no words around it.
- Multiple choice: write the letter of the option the reply picks.
- A number: write the number in the form the question asks for (an integer, or a decimal with the requested places), without units.
- A list: write it as a Python list, e.g. [1, 2].
- If the reply gives no answer, write nothing.

Example 1
Question: What is the perimeter of the square? (Unit: cm)
Reply: Each side is 4 cm long, so the perimeter is 4 x 4 = 16 cm.
Final answer: 16

Example 2
Question: Find the measure of angle ABC.
Choices:
(A) 30
(B) 45
(C) 60
(D) 90
Reply: Since the triangle is isosceles with a right angle at C, angle ABC is half of 90, which gives 45.
Final answer: B

Example 3
Question: What fraction of the bars are blue? Answer with two decimal places.
Reply: Two of the six bars are blue, so the share is about 0.333, roughly 0.33.
Final answer: 0.33

Example 4
Question: What are the roots of the plotted function?
Reply: The curve meets the x-axis at -3 and at 2.
Final answer: [-3, 2]

Question: {question}
Reply: {reply}
Final answer:"""

MATHVISTA_EXTRACTOR_SHA256 = hashlib.sha256(MATHVISTA_EXTRACTOR.encode()).hexdigest()


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def mathvista_rule(s: Sample, reply: str) -> str | None:
    """What the rules read out of a reply: an option letter for multiple choice, else a number (or
    a list for list answers); None where the rules cannot tell and the extractor is needed."""
    if s.meta.get("question_type") == "multi_choice":
        choices = s.meta.get("choices") or []
        if reply.strip() in choices:  # the reply is an option's exact text (MathVista's own first rule)
            return chr(ord("A") + choices.index(reply.strip()))
        return parse_choice(reply, s.options or None)
    if s.meta.get("answer_type") == "list":
        m = re.search(r"\[[^\[\]]*\]", reply)
        return m.group(0) if m else None
    return parse_number(reply)


def mathvista_normalise(s: Sample, extraction: str | None) -> str | None:
    """MathVista's normalize_extracted_answer (evaluation/calculate_score.py): a choice's text for
    multiple choice (a letter maps to its option, other text to the most similar option by edit
    distance), str(int(x)) for integers, str(round(x, precision)) for floats, the text for lists."""
    if extraction is None:
        return None
    e = extraction.strip()
    if s.meta.get("question_type") == "multi_choice":
        choices = [str(c) for c in s.meta.get("choices") or []]
        if not choices or not e:
            return None
        m = re.search(r"\(([A-Za-z])\)", e)
        letter = m.group(1).upper() if m else e.upper().rstrip(".")
        if len(letter) == 1 and "A" <= letter < chr(ord("A") + len(choices)):
            return choices[ord(letter) - ord("A")]
        return min(choices, key=lambda c: _edit_distance(e, c))
    answer_type = s.meta.get("answer_type")
    if answer_type in ("integer", "float"):
        n = normalise_number(e) or (numbers_in(e) or [None])[-1]
        if n is None:
            return None
        x = float(n)
        if answer_type == "integer":
            return str(int(x))
        return str(round(x, int(s.meta.get("precision") or 0)))
    return e.replace(" ", "") if answer_type == "list" else e


def _mathvista_gold(s: Sample) -> str:
    gold = str(s.meta.get("answer_text", s.target)).strip()
    return gold.replace(" ", "") if s.meta.get("answer_type") == "list" else gold


def score_mathvista(
    samples: list[Sample],
    predictions: dict[str, str],
    *,
    judge: Judge | None = None,
    bench: str = "mathvista",
) -> BenchResult:
    """MathVista (Lu et al. 2024, arXiv 2310.02255; the authors' evaluation/extract_answer.py and
    calculate_score.py): extract the answer, normalise it by question and answer type and precision,
    compare as text with the gold answer. Rules extract first; only replies the rules cannot read go
    to the judge (an LLM extractor). Without a judge those take the reply's last number (numeric
    answers) or count as unanswered, and the notes say how many. Accuracy overall, per task and per
    skill."""
    pairs, notes = _answered(samples, predictions)
    extracted: dict[str, tuple[str | None, str]] = {}
    need = []
    for s, p in pairs:
        got = mathvista_rule(s, p)
        if got is not None:
            extracted[s.id] = (got, "rule")
        else:
            need.append((s, p))
    if need and judge is not None:
        name = judge_name(judge)
        replies = judge(
            [
                (
                    s.id,
                    [
                        {
                            "role": "user",
                            "content": MATHVISTA_EXTRACTOR.format(
                                question=s.meta.get("query") or s.question, reply=p
                            ),
                        }
                    ],
                )
                for s, p in need
            ]
        )
        if len(replies) != len(need):
            raise SyphusError(f"mathvista: the judge returned {len(replies)} replies for {len(need)} prompts")
        failed = 0
        for (s, _), r in zip(need, replies, strict=True):
            if r is None:
                failed += 1
            text = (r or "").strip().removeprefix("Final answer:").strip()
            extracted[s.id] = (text or None, name)
        notes.append(
            f"{len(need)} of {len(pairs)} replies needed the extractor ({name}, prompt sha256 {MATHVISTA_EXTRACTOR_SHA256[:12]})"
            + (f"; {failed} extractor requests failed" if failed else "")
        )
    elif need:
        for s, p in need:
            nums = numbers_in(p) if s.meta.get("answer_type") in ("integer", "float") else []
            extracted[s.id] = (nums[-1] if nums else None, "rule")
        notes.append(
            f"{len(need)} of {len(pairs)} replies needed an extractor and no judge was given (last number used)"
        )
    verdicts = []
    for s, p in pairs:
        raw, by = extracted[s.id]
        norm = mathvista_normalise(s, raw)
        correct = float(norm is not None and norm == _mathvista_gold(s))
        parsed = norm
        if s.meta.get("question_type") == "multi_choice" and norm is not None:
            parsed = chr(ord("A") + [str(c) for c in s.meta["choices"]].index(norm))
        verdicts.append(Verdict(s.id, p, parsed, s.target, correct, s.category, by))
    extra = {s.id: [f"skill: {k}" for k in s.meta.get("skills") or []] for s, _ in pairs}
    return BenchResult(bench, accuracy_metrics(verdicts, extra=extra), verdicts, notes)


# ---------------------------------------------------------------- MM-Vet

# The grader's instruction and examples (written for this project after the format of MM-Vet's
# GPT-4 grader in the authors' mm-vet_evaluator: a few-shot table of question, ground truth,
# prediction and correctness, whose last row the grader completes).
MMVET_GRADER = """You grade an AI assistant's answer against the ground truth. Give a correctness score from 0.0 (wholly wrong) to 1.0 (wholly right) in steps of 0.1. In the ground truth, parts joined by <AND> must all appear in the answer for full marks, with partial credit for the parts that do; parts joined by <OR> are alternatives, any one of which earns full marks. For a long ground truth, judge how much of its content the answer conveys correctly. Write only the score.

Question | Ground truth | Answer | Correctness
--- | --- | --- | ---
How many apples are on the plate? | 3 | There are three apples on the plate. | 1.0
Which two colours does the flag have? | red <AND> white | The flag is red. | 0.5
Which two colours does the flag have? | red <AND> white | It is red and white. | 1.0
What is the speed limit here? | 50 <OR> 50 km/h | The sign says 50. | 1.0
What is the speed limit here? | 50 <OR> 50 km/h | 30 km/h | 0.0
What does this sign tell walkers? | Pedestrians may not cross the road here and should use the footbridge instead. | You are not allowed to walk across at this spot. | 0.6
{question} | {truth} | {answer} |"""

MMVET_GRADER_SHA256 = hashlib.sha256(MMVET_GRADER.encode()).hexdigest()
MMVET_CAPABILITIES = ("rec", "ocr", "know", "gen", "spat", "math")


def mmvet_grade(reply: str | None) -> float | None:
    """The grade a grader reply gives: its first number, if within [0, 1]."""
    if not reply:
        return None
    m = re.search(r"(?<![\d.])(0(?:\.\d+)?|1(?:\.0+)?|\.\d+)(?![\d.])", reply.strip())
    if not m:
        return None
    x = float(m.group(1))
    return x if 0.0 <= x <= 1.0 else None


def score_mmvet(
    samples: list[Sample], predictions: dict[str, str], *, judge: Judge | None = None, bench: str = "mmvet"
) -> BenchResult:
    """MM-Vet (Yu et al. 2023, arXiv 2308.02490; the authors' GPT-4 grader): an LLM grades each answer
    from 0 to 1 against the ground truth (<AND>/<OR> semantics); `score` is the mean grade overall
    and per capability (rec, ocr, know, gen, spat, math: a sample counts for each capability it
    needs), its interval normal over samples. A reply the grader does not grade scores 0, as in the
    official script after its retries, and the notes count them."""
    if judge is None:
        raise SyphusError("mmvet is graded by an LLM: give a judge model (e.g. --judge MODEL)")
    pairs, notes = _answered(samples, predictions)
    name = judge_name(judge)
    prompts = []
    for s, p in pairs:
        truth = s.target.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
        text = MMVET_GRADER.format(
            question=s.question, truth=" ".join(truth.split()), answer=" ".join(p.split())
        )
        prompts.append((s.id, [{"role": "user", "content": text}]))
    replies = judge(prompts) if prompts else []
    if len(replies) != len(prompts):
        raise SyphusError(f"mmvet: the judge returned {len(replies)} replies for {len(prompts)} prompts")
    verdicts, ungraded = [], 0
    for (s, p), r in zip(pairs, replies, strict=True):
        grade = mmvet_grade(r)
        if grade is None:
            ungraded += 1
        verdicts.append(
            Verdict(
                s.id, p, None if grade is None else f"{grade:.1f}", s.target, grade or 0.0, s.category, name
            )
        )
    notes.append(f"graded by {name} (prompt sha256 {MMVET_GRADER_SHA256[:12]})")
    if ungraded:
        notes.append(f"{ungraded} of {len(verdicts)} answers got no usable grade and score 0")
    caps = {s.id: [f"capability: {c}" for c in s.meta.get("capabilities") or []] for s, _ in pairs}
    metrics = _grouped(
        "score", verdicts, lambda vs: mean_metric("score", [v.correct for v in vs]), extra=caps
    )
    return BenchResult(bench, metrics, verdicts, notes)
