"""Is this text in the language we asked for? Script counts plus stopwords, no model.

Text is cut into units: each Han, kana or Hangul character is one unit (those scripts do not
separate words with spaces the way Latin does; Hangul does, but counting syllables is as good),
every other run of letters is one word-unit classified by its script. For zh, ja, ko and ar the
share of units in the target script decides; for es, de and fr (Latin like English) stopwords
and accented letters decide.
"""

from __future__ import annotations

import re
import unicodedata

LANGUAGE_NAMES = {
    "en": "English",
    "zh": "Chinese (Simplified)",
    "ja": "Japanese",
    "ko": "Korean",
    "ar": "Arabic",
    "es": "Spanish",
    "de": "German",
    "fr": "French",
}

STOPWORDS = {
    "en": set(
        "the a an and of to in is are was were it this that with for on what where why how do does did you your "
        "there they he she his her be can which who at from by as or not".split()
    ),
    "es": set(
        "el la los las un una unos unas y de del en es son que qué por para con se su sus al lo como cómo "
        "dónde está están hay este esta estos estas muy pero también o cuál cuántos cuántas porque".split()
    ),
    "de": set(
        "der die das den dem des ein eine einen einem einer und ist sind was wo wie warum in im mit von zu "
        "auf für nicht es sie er ich du auch aber oder welche welcher welches gibt kann hat haben".split()
    ),
    "fr": set(
        "le la les un une des et est sont que qu qui de du dans en sur pour avec pas il elle ils elles "
        "ce cette ces où comment pourquoi quel quelle quels quelles au aux y a se sa son ses une".split()
    ),
}
ACCENTS = {"es": set("ñ¿¡áíóú"), "de": set("äöüß"), "fr": set("àâçèêëîïôûùœ")}
_WORD_RE = re.compile(r"[^\W\d_]+")


def _script(ch: str) -> str:
    o = ord(ch)
    if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9F:
        return "kana"
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF:
        return "han"
    if 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
        return "hangul"
    if 0x0600 <= o <= 0x06FF or 0x0750 <= o <= 0x077F or 0xFB50 <= o <= 0xFEFF:
        return "arabic"
    name = unicodedata.name(ch, "")
    if name.startswith("LATIN"):
        return "latin"
    if name.startswith("CYRILLIC"):
        return "cyrillic"
    return "other"


def script_units(text: str) -> dict[str, int]:
    """Count units per script: CJK characters one by one, other words as wholes."""
    counts: dict[str, int] = {}
    for word in _WORD_RE.findall(text):
        scripts = [_script(c) for c in word]
        for s in scripts:
            if s in ("han", "kana", "hangul"):
                counts[s] = counts.get(s, 0) + 1
        rest = [s for s in scripts if s not in ("han", "kana", "hangul")]
        if rest:
            major = max(set(rest), key=rest.count)
            counts[major] = counts.get(major, 0) + 1
    return counts


def stopword_scores(text: str) -> dict[str, int]:
    words = [w.lower() for w in _WORD_RE.findall(text)]
    scores = {lang: sum(w in sw for w in words) for lang, sw in STOPWORDS.items()}
    for lang, chars in ACCENTS.items():
        scores[lang] += sum(c in chars for c in text.lower())
    return scores


def language_problem(text: str, lang: str) -> str | None:
    """``None`` when ``text`` reads as ``lang``; otherwise why not, in a few words."""
    units = script_units(text)
    total = sum(units.values())
    if total == 0:
        return "has no words"
    name = LANGUAGE_NAMES.get(lang, lang)

    def share(*scripts: str) -> float:
        return sum(units.get(s, 0) for s in scripts) / total

    if lang == "zh":
        if share("kana") > 0.05:
            return f"contains Japanese kana, not {name}"
        if share("han") < 0.5:
            return f"only {share('han'):.0%} Chinese characters"
    elif lang == "ja":
        if share("han", "kana") < 0.5:
            return f"only {share('han', 'kana'):.0%} Japanese characters"
        if units.get("kana", 0) == 0 and total >= 8:
            return "has no kana (reads as Chinese, not Japanese)"
    elif lang == "ko":
        if share("hangul") < 0.5:
            return f"only {share('hangul'):.0%} Hangul"
    elif lang == "ar":
        if share("arabic") < 0.5:
            return f"only {share('arabic'):.0%} Arabic script"
    elif lang in ("es", "de", "fr", "en"):
        if share("latin") < 0.7:
            return f"only {share('latin'):.0%} Latin-script words"
        scores = stopword_scores(text)
        target = scores[lang]
        best_other = max((v, k) for k, v in scores.items() if k != lang)
        if target == 0:
            return f"no common {name} words"
        if best_other[0] > target:
            return f"reads as {LANGUAGE_NAMES[best_other[1]]} rather than {name}"
    else:
        raise ValueError(f"no language check for {lang!r}")
    return None


_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹０１２３４５６７８９", "0123456789" * 3)
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)?")


def numbers(text: str) -> set[str]:
    """Numbers of two or more digits (times, counts, years), with Arabic/full-width digits read."""
    return {
        n.replace(",", ".")
        for n in _NUMBER_RE.findall(text.translate(_DIGITS))
        if sum(c.isdigit() for c in n) >= 2
    }
