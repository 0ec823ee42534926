"""Turning instruction-response pairs into Otter token ids and loss labels.

One example renders as ``<image>User: {instruction} GPT:<answer> {answer}<|endofchunk|>``;
in-context examples come first, each with its own ``<image>`` (its own slot on the T axis of
``vision_x``). A text-only example has no ``<image>`` token. Only the answer tokens and the
``<|endofchunk|>`` that closes them carry labels; everything else is ``-100``.

The prompt is built piece by piece (special tokens inserted by id, text tokenized without
special tokens) so that label spans are exact and the same code builds training prompts and
generation prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.errors import SyphusError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class PromptFormat:
    """Text around one example; ``user`` comes before ``<answer>``, ``answer`` after it."""

    name: str
    user: str
    answer: str


PROMPT_FORMATS: dict[str, PromptFormat] = {
    # The format Otter was trained with (MIMIC-IT, arXiv 2306.05425).
    "otter": PromptFormat("otter", "User: {instruction} GPT:", " {answer}"),
    # LLaMA-2 chat style, for LLaMA-2-derived language models.
    "llama2": PromptFormat("llama2", "[INST] {instruction} [/INST]", " {answer}"),
    # A plain QA layout for base models that never saw a chat template.
    "plain": PromptFormat("plain", "Question: {instruction} Answer:", " {answer}"),
}


def get_format(name: str) -> PromptFormat:
    if name not in PROMPT_FORMATS:
        raise SyphusError(f"unknown prompt format '{name}' (choose one of {', '.join(PROMPT_FORMATS)})")
    return PROMPT_FORMATS[name]


@dataclass(frozen=True)
class SpecialTokens:
    """Token ids the prompt needs; ``bos_id`` may be None for tokenizers without one."""

    media_id: int
    endofchunk_id: int
    answer_id: int
    pad_id: int
    bos_id: int | None = None

    @classmethod
    def from_model(cls, tokenizer, config) -> SpecialTokens:
        """Read the ids from an Otter config and its tokenizer."""
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else config.endofchunk_token_id
        return cls(
            media_id=int(config.media_token_id),
            endofchunk_id=int(config.endofchunk_token_id),
            answer_id=int(config.answer_token_id),
            pad_id=int(pad),
            bos_id=tokenizer.bos_token_id,
        )


@dataclass
class Turn:
    """One example as text: how many ``<image>`` tokens precede it and its two halves."""

    instruction: str
    answer: str | None  # None: the query whose answer the model is to generate
    n_images: int  # 0 for text only; >1 puts several images on T before the instruction


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


class PromptBuilder:
    """Builds token ids and labels for a list of turns (in-context examples, then the query)."""

    def __init__(self, tokenizer, special: SpecialTokens, fmt: str | PromptFormat = "otter"):
        self.tokenizer = tokenizer
        self.special = special
        self.fmt = get_format(fmt) if isinstance(fmt, str) else fmt

    def _text(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, turns: list[Turn], *, supervise_context: bool = True) -> Encoded:
        """Ids and labels; a turn with ``answer=None`` ends the prompt right after ``<answer>``.

        With ``supervise_context=False`` only the last turn's answer is supervised.
        """
        s = self.special
        ids: list[int] = []
        labels: list[int] = []
        if s.bos_id is not None:
            ids.append(s.bos_id)
            labels.append(IGNORE_INDEX)
        for i, turn in enumerate(turns):
            user = [s.media_id] * turn.n_images
            user += self._text(self.fmt.user.format(instruction=turn.instruction.strip()))
            user.append(s.answer_id)
            ids += user
            labels += [IGNORE_INDEX] * len(user)
            if turn.answer is None:
                if i != len(turns) - 1:
                    raise ValueError("only the last turn may leave its answer open")
                break
            answer = self._text(self.fmt.answer.format(answer=turn.answer.strip())) + [s.endofchunk_id]
            supervised = supervise_context or i == len(turns) - 1
            ids += answer
            labels += answer if supervised else [IGNORE_INDEX] * len(answer)
        return Encoded(ids, labels)
