"""Turn what LLMs actually reply into instruction-response pairs.

Accepted shapes, tried in this order:

1. JSON (also inside a ```json fence): a list of objects with a question-like and an
   answer-like key (``question/instruction/q/user/human`` and ``answer/response/a/gpt/
   assistant``), a list of chat messages (``role``/``content`` or ``from``/``value``), a list of
   ``[question, answer]`` lists, or an object holding one of those under a key such as
   ``pairs``, ``qa`` or ``conversations``.
2. Labelled lines: ``Question:``/``Answer:`` (also plural, as small models write them), ``Q:``/``A:``, ``User:``/``GPT:``,
   ``Human:``/``Assistant:``, with optional numbering, bullets and markdown bold
   (``1. **Question:** ...``, ``**Q2**: ...``). Answers may span several lines.
3. A numbered list whose items are ``<question>? <answer>`` (on one or two lines).

Exact duplicate pairs collapse to one; an answer that repeats a line three times (the loop
small models fall into) is rejected.
Everything else raises ResponseParseError with a reason that tells a human what was wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any

from syphus.tasks.base import Pair, ResponseParseError

_Q_KEYS = ("question", "instruction", "q", "user", "human", "query", "prompt", "input")
_A_KEYS = ("answer", "response", "a", "gpt", "assistant", "output", "reply", "ai")
_LIST_KEYS = ("pairs", "qa", "qas", "qa_pairs", "conversations", "conversation", "data", "items", "questions")
_Q_ROLES = {"user", "human"}
_A_ROLES = {"assistant", "gpt", "ai", "bot", "model"}

# English labels plus the ones models write when they translate the labels themselves.
_Q_LABELS = r"questions?|q|instruction|user|human|query|pregunta|frage|问题|問題|質問|질문|السؤال|سؤال"
_A_LABELS = r"answers?|a|response|gpt|assistant|ai|respuesta|antwort|réponse|回答|答案|答え|답변|대답|الجواب|الإجابة|جواب|إجابة"
_BOLD = r"(?:\*\*|__)?"
LABEL_RE = re.compile(
    r"^\s*(?:[-*•>]\s+)?(?:\(?\d{1,3}[.)\]]\s*)?" + _BOLD + r"\s*"
    rf"(?P<label>{_Q_LABELS}|{_A_LABELS})\s*(?:#?\d{{1,3}})?\s*"
    + _BOLD
    + r"\s*[:：]\s*"
    + _BOLD
    + r"\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
# "Question: ... Answer: ..." on one line; only full-word labels, so "Plan A: ..." stays whole.
_INLINE_ANSWER_RE = re.compile(
    r"\s+" + _BOLD + r"(?:answers?|response|gpt|assistant)\s*" + _BOLD + r"\s*[:：]\s*" + _BOLD, re.IGNORECASE
)
_NUMBERED_RE = re.compile(r"^\s*(?:\(?\d{1,3}[.)\]]|[-*•])\s+(?P<rest>.*)$")
_EPILOGUE_RE = re.compile(
    r"^\s*(?:I hope|Hope this|Let me know|Feel free|These (?:questions|pairs)|Note:)", re.IGNORECASE
)
REFUSAL_RE = re.compile(
    r"^\s*(?:I'?m sorry|I am sorry|Sorry,|I cannot|I can'?t|As an AI|I am unable|I'm unable)", re.IGNORECASE
)
_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def clean_text(s: str) -> str:
    """Trim whitespace, wrapping quotes and stray markdown bold around a field."""
    s = s.strip()
    for mark in ("**", "__"):
        if s.startswith(mark) and s.endswith(mark) and len(s) > 2 * len(mark):
            s = s[len(mark) : -len(mark)].strip()
    s = re.sub(r"^(?:\*\*|__)\s*|\s*(?:\*\*|__)$", "", s)
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'“”":
        s = s[1:-1].strip()
    if len(s) >= 2 and s[0] == "“" and s[-1] == "”":
        s = s[1:-1].strip()
    return s


def parse_pairs(text: str, *, min_pairs: int = 1, max_pairs: int = 50) -> list[Pair]:
    """Parse a reply into pairs; raise ResponseParseError with the reason when it has none."""
    if text is None or not text.strip():
        raise ResponseParseError("empty reply")
    body = text.strip()
    pairs = _from_json(body)
    if pairs is None:
        pairs = _from_labels(body)
    if pairs is None:
        pairs = _from_numbered(body)
    if pairs is None:
        if REFUSAL_RE.match(body):
            raise ResponseParseError(f"model refused: {body[:80]!r}")
        raise ResponseParseError(
            "no question/answer pairs found: expected 'Question:'/'Answer:' (or 'User:'/'GPT:') labels, "
            f"a numbered list of questions with answers, or a JSON list; reply starts {body[:60]!r}"
        )
    return check_pairs(pairs, min_pairs=min_pairs, max_pairs=max_pairs)


def check_pairs(pairs: list[Pair], *, min_pairs: int = 1, max_pairs: int = 50) -> list[Pair]:
    """Reject empty fields, echoed questions and counts outside [min_pairs, max_pairs]."""
    out: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    for i, p in enumerate(pairs, 1):
        ins, ans = clean_text(p.instruction), clean_text(p.answer)
        if not ins:
            raise ResponseParseError(f"pair {i}: empty question")
        if not ans:
            raise ResponseParseError(f"pair {i}: question {ins[:50]!r} has no answer (reply truncated?)")
        if ins.casefold() == ans.casefold():
            raise ResponseParseError(f"pair {i}: the answer repeats the question")
        looping = _repeated_line(ans)
        if looping:
            raise ResponseParseError(
                f"pair {i}: the answer repeats {looping!r} 3 or more times (degenerate loop)"
            )
        key = (ins.casefold(), ans.casefold())
        if key in seen:
            continue  # small models often emit the same pair twice; one copy is the content
        seen.add(key)
        out.append(Pair(instruction=ins, answer=ans))
    if len(out) < min_pairs:
        raise ResponseParseError(f"found {len(out)} pair(s), fewer than the {min_pairs} required")
    if len(out) > max_pairs:
        raise ResponseParseError(
            f"found {len(out)} pairs, more than the {max_pairs} allowed (runaway reply?)"
        )
    return out


def _repeated_line(text: str) -> str | None:
    counts: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip(" -*•").rstrip(".").casefold()
        if len(line) >= 8:
            counts[line] = counts.get(line, 0) + 1
            if counts[line] >= 3:
                return line[:60]
    return None


# -- JSON -------------------------------------------------------------------------------


def extract_json(text: str) -> Any | None:
    """The JSON value in a reply (whole text, a fenced block, or the outermost [...] / {...})."""
    candidates = [text]
    candidates += [m.group(1) for m in _FENCE_RE.finditer(text)]
    for open_ch, close_ch in (("[", "]"), ("{", "}")):
        start, end = text.find(open_ch), text.rfind(close_ch)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for c in candidates:
        c = c.strip()
        if not c or c[0] not in "[{":
            continue
        try:
            return json.loads(c)
        except json.JSONDecodeError:
            continue
    return None


def _from_json(text: str) -> list[Pair] | None:
    value = extract_json(text)
    if value is None:
        return None
    items = _json_items(value)
    if items is None:
        keys = sorted(value.keys()) if isinstance(value, dict) else type(value).__name__
        raise ResponseParseError(f"JSON reply holds no question/answer list (found {keys})")
    return _json_pairs(items)


def _json_items(value: Any) -> list | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for key in _LIST_KEYS:
            if isinstance(lowered.get(key), list):
                return lowered[key]
        if _pick(lowered, _Q_KEYS) is not None and _pick(lowered, _A_KEYS) is not None:
            return [value]
    return None


def _pick(d: dict[str, Any], keys: tuple[str, ...]) -> Any | None:
    for k in keys:
        if k in d:
            return d[k]
    return None


def _json_pairs(items: list) -> list[Pair]:
    if items and all(isinstance(x, dict) and ("role" in x or "from" in x) for x in items):
        return _chat_pairs(items)
    pairs: list[Pair] = []
    for i, item in enumerate(items, 1):
        if isinstance(item, (list, tuple)) and len(item) == 2:
            q, a = item
        elif isinstance(item, dict):
            lowered = {str(k).lower(): v for k, v in item.items()}
            q, a = _pick(lowered, _Q_KEYS), _pick(lowered, _A_KEYS)
            if q is None or a is None:
                raise ResponseParseError(
                    f"JSON item {i} has no question/answer keys (keys: {sorted(lowered)})"
                )
        else:
            raise ResponseParseError(
                f"JSON item {i} is a {type(item).__name__}, not a question/answer object"
            )
        if not isinstance(q, str) or not isinstance(a, str):
            raise ResponseParseError(f"JSON item {i}: question and answer must be strings")
        pairs.append(Pair(instruction=q, answer=a))
    return pairs


def _chat_pairs(items: list[dict]) -> list[Pair]:
    pairs: list[Pair] = []
    pending: str | None = None
    for i, m in enumerate(items, 1):
        role = str(m.get("role", m.get("from", ""))).lower()
        content = m.get("content", m.get("value", ""))
        if not isinstance(content, str):
            raise ResponseParseError(f"JSON message {i}: content must be a string")
        if role in _Q_ROLES:
            if pending is not None:
                raise ResponseParseError(
                    f"JSON message {i}: two user turns in a row (question {pending[:40]!r} unanswered)"
                )
            pending = content
        elif role in _A_ROLES:
            if pending is None:
                raise ResponseParseError(f"JSON message {i}: assistant turn without a question before it")
            pairs.append(Pair(instruction=pending, answer=content))
            pending = None
        else:
            raise ResponseParseError(f"JSON message {i}: unknown role {role!r}")
    if pending is not None:
        raise ResponseParseError(f"last question {pending[:50]!r} has no answer (reply truncated?)")
    return pairs


# -- labelled lines ------------------------------------------------------------------------


def label_role(label: str) -> str:
    """``"q"`` for a question label (Question, User, ...), ``"a"`` for an answer label."""
    return "q" if re.fullmatch(_Q_LABELS, label, re.IGNORECASE) else "a"


def _from_labels(text: str) -> list[Pair] | None:
    segments: list[list] = []  # [role, lines]
    for line in text.splitlines():
        m = LABEL_RE.match(line)
        if m:
            role, rest = label_role(m.group("label")), m.group("rest")
            inline = _INLINE_ANSWER_RE.search(rest) if role == "q" else None
            if inline:
                segments.append(["q", [rest[: inline.start()]]])
                segments.append(["a", [rest[inline.end() :]]])
            else:
                segments.append([role, [rest]])
        elif segments:
            segments[-1][1].append(line)
    if not any(role == "q" for role, _ in segments) or not any(role == "a" for role, _ in segments):
        return None
    pairs: list[Pair] = []
    question: str | None = None
    for idx, (role, lines) in enumerate(segments):
        if idx == len(segments) - 1:
            lines = _drop_epilogue(lines)
        content = "\n".join(lines).strip()
        if role == "q":
            if question is not None:
                raise ResponseParseError(f"question {question[:50]!r} has no answer before the next question")
            question = content
        elif question is None:
            if not pairs:
                raise ResponseParseError("reply starts with an answer label before any question")
            prev = pairs[-1]
            pairs[-1] = Pair(instruction=prev.instruction, answer=f"{prev.answer}\n{content}".strip())
        else:
            pairs.append(Pair(instruction=question, answer=content))
            question = None
    if question is not None:
        raise ResponseParseError(f"last question {question[:50]!r} has no answer (reply truncated?)")
    return pairs


def _drop_epilogue(lines: list[str]) -> list[str]:
    """Drop a closing 'I hope this helps' paragraph after the last answer."""
    for i in range(1, len(lines)):
        if _EPILOGUE_RE.match(lines[i]) and not lines[i - 1].strip():
            return lines[:i]
    return lines


# -- numbered "question? answer" items -------------------------------------------------------


def _from_numbered(text: str) -> list[Pair] | None:
    items: list[list[str]] = []
    for line in text.splitlines():
        m = _NUMBERED_RE.match(line)
        if m:
            items.append([m.group("rest")])
        elif items and line.strip():
            items[-1].append(line.strip())
    if not items:
        return None
    pairs: list[Pair] = []
    for i, item in enumerate(items, 1):
        joined = " ".join(item).strip()
        q, mark, a = joined.partition("?")
        if not mark:
            if i == 1:
                return None
            raise ResponseParseError(
                f"list item {i} is not a question followed by its answer: {joined[:60]!r}"
            )
        a = re.sub(r"^\s*(?:[-–—:]|A\s*[:：])\s*", "", a)
        if not a.strip():
            raise ResponseParseError(f"list item {i}: question {q[:50]!r} has no answer")
        pairs.append(Pair(instruction=q.strip() + "?", answer=a.strip()))
    return pairs
