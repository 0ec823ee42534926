"""Lenient answer parsing: what a model's free text says, for yes/no, option-letter and numeric questions.

Benchmarks' own scripts parse strictly (lmms-eval's POPE compares the lower-cased reply to "yes"
exactly, so "Yes." counts as wrong) or loosely (Otter's MagnifierBench parser returns the first of
A-D found anywhere in the text, so "A cat" reads as option A). These parsers accept the ways people
and models actually answer, and never read a letter out of a word:

- a letter counts only as a token of its own ("B", "(B)", "B.", "B)", "Answer: b"), never as part of
  a word ("Because", "Blue");
- "A" and "I" followed by a lower-case word are the article and the pronoun ("A cat", "I think"),
  and a lower-case "a" or "i" is a letter only where the text says it is one ("answer: a", "(a)");
- when letters give no single answer, an option's text is matched as whole words ("the dog" picks
  the option "dog"; with options "red" and "dark red", "dark red" picks the longer one);
- what stays ambiguous (two different letters, "yes and no") parses to None, which scores as wrong.
"""

from __future__ import annotations

import re

_WS = re.compile(r"\s+")
_MARKUP = re.compile(r"[*_`#]+")  # markdown emphasis and code marks around answers ("**B**")


def _clean(text: str | None) -> str:
    if not text:
        return ""
    return _WS.sub(" ", _MARKUP.sub("", str(text))).strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


# ---------------------------------------------------------------- yes / no

_YES_WORDS = {"yes", "yeah", "yep", "yup", "true", "affirmative"}
_NO_WORDS = {"no", "nope", "nah", "false", "negative"}
_NEGATIONS = {
    "no",
    "not",
    "none",
    "nothing",
    "nobody",
    "neither",
    "never",
    "without",
    "isn't",
    "aren't",
    "doesn't",
    "don't",
    "didn't",
    "can't",
    "cannot",
    "wasn't",
    "weren't",
    "hasn't",
    "haven't",
}
_EXPLICIT_YN = re.compile(
    r"\b(?:answer|response)\s*(?:is|:|-|would be|should be)?\s*[\"'(]?\s*(yes|no)\b", re.I
)
# "There is a dog ...", "The image shows ...": a statement that answers by asserting or denying.
_STATEMENT = re.compile(
    r"^(?:there(?:'s| (?:is|are|was|were)(?:n't)?\b)|it(?:'s| (?:is|does|has)(?:n't)?\b)"
    r"|the (?:image|picture|photo) (?:shows|contains|has|does)\b"
    r"|i (?:can(?:not|'t)?|do(?:n't| not)?|could(?:n't)?) (?:see|find|spot)\b)",
    re.I,
)


def parse_yes_no(text: str | None) -> str | None:
    """'yes', 'no' or None. Reads "Yes.", "yes, there is", "No", "NO!", "The answer is no",
    "There is no dog in the image" (a statement with a negation reads as no, without one as yes)."""
    t = _clean(text)
    if not t:
        return None
    words = _words(t)
    if not words:
        return None
    first_sentence = re.split(r"(?<=[.!?])\s", t, maxsplit=1)[0]
    fs_words = set(_words(first_sentence))
    if {"yes", "no"} <= fs_words:
        return None  # "Yes and no": no answer
    if words[0] in _YES_WORDS or (len(words) == 1 and words[0] == "y"):
        return "yes"
    if words[0] in _NO_WORDS or (len(words) == 1 and words[0] == "n"):
        return "no"
    explicit = {m.group(1).lower() for m in _EXPLICIT_YN.finditer(t)}
    if len(explicit) == 1:
        return explicit.pop()
    has_yes = bool(fs_words & {"yes"})
    has_no = "no" in fs_words
    if has_yes != has_no:
        return "yes" if has_yes else "no"
    if not has_yes and _STATEMENT.match(first_sentence):
        return "no" if fs_words & _NEGATIONS else "yes"
    return None


# ---------------------------------------------------------------- option letters

_EXPLICIT_LETTER = re.compile(
    r"\b(?:answer|option|choice)s?\s*(?:is|:|=|-|would be|should be|will be)?\s*:?\s*"
    r"(?P<open>[(\[])?(?P<letter>[A-Za-z])(?P<close>[)\]])?(?=$|[\s.,:;!?)\]\"'])",
    re.I,
)
_LEADING_LETTER = re.compile(r"^[(\[]?(?P<letter>[A-Za-z])(?P<after>[)\].:,]|$|\s)")
_BRACKETED = re.compile(r"[(\[](?P<letter>[A-Za-z])[)\]]")
_BARE_UPPER = re.compile(r"(?<![A-Za-z0-9'])(?P<letter>[A-Z])(?![A-Za-z0-9'])")
# "A is correct", "B would be the answer": a letter at the start followed by a verb of choosing.
_LETTER_IS = re.compile(r"^(?P<letter>[A-Z])\s+(?:is|would be|seems|looks)\b")


# After a lone "A", these words make it the letter, not the article: "A and B", "A is right".
_LETTER_CONTEXT = {"and", "or", "nor", "is", "was", "seems", "would", "looks", "because", "since"}


def _followed_by_word(text: str, end: int) -> bool:
    """True when the text after `end` is a space and then a lower-case word that reads as the rest
    of a phrase: "A cat", "I think" (but not "A and B", "A is correct")."""
    m = re.match(r"\s+([a-z][a-z']*)", text[end:])
    return m is not None and m.group(1) not in _LETTER_CONTEXT


def _letter_at(text: str, m: re.Match, letters: set[str], *, explicit: bool) -> str | None:
    raw = m.group("letter")
    up = raw.upper()
    if up not in letters:
        return None
    bracketed = bool(m.groupdict().get("open") or m.groupdict().get("close"))
    if bracketed:
        return up
    end = m.end("letter")
    if raw in "aAiI" and _followed_by_word(text, end):
        return None  # an article or the pronoun, not an option
    if raw.islower() and not explicit and raw in "ai":
        return None
    return up


def _letters_from(text: str, letters: set[str]) -> str | None:
    t = text
    if re.match(r"^(?:both |either )?[(\[]?[A-Z][)\]]?,?\s+(?:and|or)\s+[(\[]?[A-Z](?![A-Za-z])", t, re.I):
        return None  # "A or B", "both (A) and (C)": no single answer
    # 1. An explicit "answer is X" / "Answer: X" / "option (X)": the last one is the final answer.
    found = [_letter_at(t, m, letters, explicit=True) for m in _EXPLICIT_LETTER.finditer(t)]
    found = [f for f in found if f]
    if found:
        return found[-1]
    # 2. The reply starts with the letter: "B", "(B)", "B.", "B) dog", "b: dog".
    m = _LETTER_IS.match(t)
    if m and m.group("letter") in letters:
        return m.group("letter")
    m = _LEADING_LETTER.match(t)
    if m and m.group("letter").upper() in letters:
        raw, after = m.group("letter"), m.group("after")
        if t[0] in "([" or after.strip() or not after:
            return raw.upper()  # "(b)", "B.", "b)", "A:", or the letter alone
        if raw.isupper() and not (raw in "AI" and _followed_by_word(t, 1)):
            return raw  # "B dog"; but "A cat" is an article and "I think" a pronoun
    # 3. Exactly one bracketed letter anywhere: "I'd pick (C) here".
    br = {m.group("letter").upper() for m in _BRACKETED.finditer(t) if m.group("letter").upper() in letters}
    if len(br) == 1:
        return br.pop()
    # 4. Exactly one stand-alone capital letter that is not an article or a pronoun.
    bare = set()
    for m in _BARE_UPPER.finditer(t):
        letter = m.group("letter")
        if letter in letters and not (letter in "AI" and _followed_by_word(t, m.end())):
            bare.add(letter)
    if len(bare) == 1:
        return bare.pop()
    return None


def _norm_text(s: str) -> str:
    return " ".join(_words(s))


def _option_from_text(text: str, options: dict[str, str]) -> str | None:
    said = _norm_text(text)
    if not said:
        return None
    norm = {k: _norm_text(v) for k, v in options.items() if v is not None and _norm_text(str(v))}
    exact = [k for k, v in norm.items() if v == said]
    if len(exact) == 1:
        return exact[0]
    hits = [k for k, v in norm.items() if re.search(rf"(?<![a-z0-9]){re.escape(v)}(?![a-z0-9])", said)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        # "dark red" contains "red": the longest hit wins when it contains every other hit.
        longest = max(hits, key=lambda k: len(norm[k]))
        if all(norm[k] in norm[longest] for k in hits):
            return longest
    return None


def parse_choice(
    text: str | None, options: dict[str, str] | None = None, *, letters: str | None = None
) -> str | None:
    """The option letter a reply chooses, or None.

    `options` maps letters to option texts (the letters allowed); without it, `letters` (default
    "ABCD") says which letters count. Letters first, then option text."""
    t = _clean(text)
    if not t:
        return None
    allowed = {k.upper() for k in options} if options else set((letters or "ABCD").upper())
    letter = _letters_from(t, allowed)
    if letter:
        return letter
    if options:
        return _option_from_text(t, options)
    return None


# ---------------------------------------------------------------- numbers

_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(rf"(?<![\w.]){_NUMBER}(?![\w])")
_FINAL_NUMBER = re.compile(
    rf"(?:answer|result|total|final value|value)\s*(?:is|:|=|would be|should be|will be)?\s*:?\s*[\"'(\$]?\s*(?P<n>{_NUMBER})",
    re.I,
)


def normalise_number(s: str) -> str | None:
    """'1,000' -> '1000', '3/4' -> '0.75', '-.5' -> '-0.5'; None when s is not a number."""
    s = s.strip().replace(",", "")
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(s)
    except (ValueError, ZeroDivisionError):
        return None
    if value == int(value) and "." not in s and "/" not in s:
        return str(int(value))
    return repr(value) if abs(value) < 1e16 else None


def numbers_in(text: str | None) -> list[str]:
    """Every number written in the text, normalised, in order."""
    out = []
    for m in _NUMBER_RE.finditer(_clean(text)):
        n = normalise_number(m.group(0))
        if n is not None:
            out.append(n)
    return out


def parse_number(text: str | None) -> str | None:
    """The number a reply gives as its answer: the last "answer is N" / "= N", or the only number in
    the reply; None when the reply has several numbers and does not say which is the answer."""
    t = _clean(text)
    if not t:
        return None
    finals = [m.group("n") for m in _FINAL_NUMBER.finditer(t)]
    if finals:
        return normalise_number(finals[-1])
    eq = re.findall(rf"=\s*\$?\s*({_NUMBER})\s*\S{{0,12}}\s*\.?$", t)
    if eq:
        return normalise_number(eq[-1])
    nums = numbers_in(t)
    if len(set(nums)) == 1:
        return nums[0]
    return None
