"""Curation filters. Nothing is deleted: each removal is a row in ``instruction_flags``
(instruction, flag, reason, run) that exports skip while it is active, and that
``unflag`` deactivates again.

Flags:
  ``dup_exact``    same normalised instruction and answer on the same images as an earlier id
  ``dup_near``     instruction-text embedding cosine >= threshold with an earlier id on the same
                   images (``scope='all'``: anywhere in the corpus)
  ``too_short`` / ``too_long``   answer length in words outside the bounds
  ``banned``       instruction or answer contains a banned phrase (case-insensitive)
  ``wrong_lang``   the text's detected language is not the record's ``lang``
  ``low_score``    a judge (``syphus score``) scored the pair below ``--min-score``
"Earlier" is id order, so reruns flag the same records.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from schemas.errors import SyphusError
from schemas.progress import Progress

DEFAULT_BANNED = (
    "as an ai language model",
    "as an ai model",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i cannot see the image",
    "i'm unable to view images",
    "as a language model",
)

FLAGS = ("dup_exact", "dup_near", "too_short", "too_long", "banned", "wrong_lang")
SCORE_FLAG = "low_score"  # raised by a --min-score run, which runs no other filter


@dataclass
class CurateConfig:
    exact_dups: bool = True
    near_dup: float | None = 0.95
    near_dup_scope: str = "image"  # image | all
    text_model: str = "st:all-MiniLM-L6-v2"
    min_answer_words: int | None = 1
    max_answer_words: int | None = None
    banned: list[str] = field(default_factory=lambda: list(DEFAULT_BANNED))
    check_lang: bool = True
    dry_run: bool = False


def normalise(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).casefold()
    t = re.sub(r"[^\w\s]", " ", t)
    return " ".join(t.split())


# --- language identification by script and function words ----------------------------------

_SCRIPTS = {
    "zh": lambda c: "\u4e00" <= c <= "\u9fff",
    "ja": lambda c: "\u3040" <= c <= "\u30ff",
    "ko": lambda c: "\uac00" <= c <= "\ud7af" or "\u1100" <= c <= "\u11ff",
    "ar": lambda c: "\u0600" <= c <= "\u06ff",
    "ru": lambda c: "\u0400" <= c <= "\u04ff",
}
_STOPWORDS = {
    "en": set("the a an is are of and to in what this that it on with there how many does do you".split()),
    "es": set("el la los las es son de y en que qué un una por con para hay cómo cuántos esta este".split()),
    "fr": set(
        "le la les est sont de et en que qu un une des du dans pour avec il y a cette ce quel quelle".split()
    ),
    "de": set(
        "der die das ist sind und zu in was ein eine mit auf den dem des es gibt wie viele diese".split()
    ),
}


def detect_language(text: str) -> str | None:
    """A small, dependency-free identifier for MIMIC-IT's languages (en, zh, ja, ko, es, fr, de,
    ar, ru); None when the text is too short or ambiguous to tell."""
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 4:
        return None
    counts = Counter()
    for c in letters:
        for lang, test in _SCRIPTS.items():
            if test(c):
                counts[lang] += 1
                break
    if counts:
        lang, cnt = counts.most_common(1)[0]
        if cnt / len(letters) > 0.3:
            # Japanese text mixes kana with Han characters; any kana share means Japanese
            if lang == "zh" and counts["ja"] > 0.05 * len(letters):
                return "ja"
            return lang
    words = re.findall(r"[^\W\d_]+", text.casefold())
    if len(words) < 3:
        return None
    scores = {lang: sum(w in sw for w in words) for lang, sw in _STOPWORDS.items()}
    best = max(scores, key=scores.get)
    ranked = sorted(scores.values(), reverse=True)
    if ranked[0] == 0 or ranked[0] == ranked[1]:
        return None
    return best


def _lang_root(code: str) -> str:
    return code.lower().replace("_", "-").split("-")[0]


# --- the run --------------------------------------------------------------------------------


@dataclass
class CurateResult:
    run_id: str | None
    counts: dict[str, int]
    total: int


def _near_dup_flags(
    ids: list[str],
    texts: list[str],
    image_keys: list[str],
    vecs: np.ndarray,
    thr: float,
    scope: str,
    skip: set[int],
) -> dict[int, str]:
    """Keep-first near-duplicate detection in id order; returns index -> reason."""
    import faiss

    out: dict[int, str] = {}
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(image_keys):
        groups.setdefault(key if scope == "image" else "*", []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        m = np.array(members)
        x = np.ascontiguousarray(vecs[m])
        kk = min(len(m), 16)
        D, nbr = faiss.knn(x, x, kk, metric=faiss.METRIC_INNER_PRODUCT)
        kept: set[int] = set()
        for j in range(len(m)):  # members are in id order
            gi = int(m[j])
            if gi in skip:
                continue
            dup_of = next(
                (
                    int(m[t])
                    for t, s in zip(nbr[j], D[j], strict=True)
                    if t >= 0 and t < j and s >= thr and int(m[t]) in kept
                ),
                None,
            )
            if dup_of is not None:
                out[gi] = f"cosine >= {thr} with '{ids[dup_of]}'"
            else:
                kept.add(gi)
    return out


def curate(
    corpus, cfg: CurateConfig, *, device: str = "cpu", progress: Progress | None = None
) -> CurateResult:
    if cfg.near_dup_scope not in ("image", "all"):
        raise SyphusError(f"--near-dup-scope must be 'image' or 'all' (got '{cfg.near_dup_scope}')")
    if (
        cfg.min_answer_words is not None
        and cfg.max_answer_words is not None
        and cfg.min_answer_words > cfg.max_answer_words
    ):
        raise SyphusError(f"--min-words {cfg.min_answer_words} is above --max-words {cfg.max_answer_words}")
    rows = [(p.id, p.instruction, p.answer, p.lang, "|".join(p.image_ids)) for p in corpus.pairs()]
    ids = [r[0] for r in rows]
    flags: list[tuple[str, str, str]] = []  # (id, flag, reason)
    flagged_any: set[int] = set()
    banned = [normalise(b) for b in cfg.banned if b.strip()]
    seen_exact: dict[tuple[str, str, str], str] = {}
    for i, (iid, ins, ans, lang, imgs) in enumerate(rows):
        nins, nans = normalise(ins), normalise(ans)
        if cfg.exact_dups:
            key = (nins, nans, imgs)
            if key in seen_exact:
                flags.append((iid, "dup_exact", f"same as '{seen_exact[key]}'"))
                flagged_any.add(i)
            else:
                seen_exact[key] = iid
        n_words = len(ans.split())
        if cfg.min_answer_words is not None and n_words < cfg.min_answer_words:
            flags.append((iid, "too_short", f"answer has {n_words} words < {cfg.min_answer_words}"))
        if cfg.max_answer_words is not None and n_words > cfg.max_answer_words:
            flags.append((iid, "too_long", f"answer has {n_words} words > {cfg.max_answer_words}"))
        hit = next((b for b in banned if f" {b} " in f" {nins} " or f" {b} " in f" {nans} "), None)
        if hit:
            flags.append((iid, "banned", f"contains '{hit}'"))
        if cfg.check_lang:
            found = detect_language(f"{ins} {ans}")
            if found is not None and found != _lang_root(lang or "en"):
                flags.append((iid, "wrong_lang", f"lang is '{lang}' but the text reads as '{found}'"))
    # a record already flagged for another reason is never the copy a near-duplicate is kept against
    row_of = {iid: i for i, iid in enumerate(ids)}
    flagged_any |= {row_of[i] for i, _, _ in flags}
    if cfg.near_dup is not None and rows:
        from curation.context import ensure_embedded, model_key
        from curation.queries import text_key

        model = ensure_embedded(corpus, cfg.text_model, "text", device=device, progress=progress)
        keys = [text_key(r[1]) for r in rows]
        got, mat = corpus.load_vectors(model_key(model), "text", sorted(set(keys)))
        pos = {k: j for j, k in enumerate(got)}
        vecs = mat[[pos[k] for k in keys]]
        near = _near_dup_flags(
            ids,
            [r[1] for r in rows],
            [r[4] for r in rows],
            vecs,
            cfg.near_dup,
            cfg.near_dup_scope,
            flagged_any,
        )
        for i, reason in sorted(near.items()):
            flags.append((ids[i], "dup_near", reason))
    counts = {f: 0 for f in FLAGS}
    for _, f, _ in flags:
        counts[f] += 1
    run_id = None
    if not cfg.dry_run:
        with corpus.transaction():
            run_id = corpus.start_run("curate", asdict(cfg))
            corpus.set_flags(flags, run_id)
            corpus.finish_run(run_id, summary={"flags": counts, "instructions": len(rows)})
    return CurateResult(run_id, counts, len(rows))


def unflag(corpus, *, flag: str | None = None, run_id: str | None = None) -> int:
    """Deactivate flags (all, one kind, or one curate run's); returns how many were active."""
    if flag is not None and flag not in (*FLAGS, SCORE_FLAG):
        raise SyphusError(f"unknown flag '{flag}' (flags are {', '.join((*FLAGS, SCORE_FLAG))})")
    return corpus.clear_flags(flag=flag, run_id=run_id)


def check_min_score(min_score: float) -> None:
    import math

    if not isinstance(min_score, int | float) or not math.isfinite(min_score):
        raise SyphusError(f"--min-score: must be a finite number on the rubric's scale (got {min_score})")


@dataclass
class ScoreCurateResult:
    run_id: str | None
    flagged: int  # pairs whose latest verdict is below the threshold
    scored: int  # pairs with a verdict (of the judge asked for)
    total: int  # pairs in the corpus
    judge: str | None


def flag_low_scores(
    corpus, min_score: float, *, judge: str | None = None, dry_run: bool = False
) -> ScoreCurateResult:
    """Flag ``low_score`` every pair whose most recent verdict (of ``judge``, when given) is below
    ``min_score`` on the rubric's scale. Pairs without a verdict are left alone."""
    check_min_score(min_score)
    judges = corpus.score_judges()
    if not judges:
        raise SyphusError(
            f"{corpus.path}: no pair has a score yet; run 'syphus score --corpus {corpus.path}' first"
        )
    if judge is not None and judge not in judges:
        raise SyphusError(
            f"--judge: '{judge}' scored no pair of {corpus.path} (judges there: {', '.join(judges)})"
        )
    if judge is None and len(judges) > 1:
        raise SyphusError(f"--judge: {len(judges)} judges scored this corpus ({', '.join(judges)}); name one")
    latest = corpus.latest_scores(judge)
    flags = [
        (iid, SCORE_FLAG, f"score {score:g}/{scale:g} < {min_score:g} by {model} (rubric {sha[:12]})")
        for iid, score, scale, model, sha in latest
        if score < min_score
    ]
    run_id = None
    if not dry_run:
        with corpus.transaction():
            run_id = corpus.start_run("curate", {"min_score": min_score, "judge": judge or judges[0]})
            corpus.set_flags(flags, run_id)
            corpus.finish_run(run_id, summary={"flags": {SCORE_FLAG: len(flags)}, "scored": len(latest)})
    total = corpus.table_size("instructions")
    return ScoreCurateResult(run_id, len(flags), len(latest), total, judge or judges[0])
