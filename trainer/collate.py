"""Batching encoded samples: right-padded text, zero-padded ``vision_x[B, T, F, C, H, W]``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trainer.prompting import IGNORE_INDEX


@dataclass
class EncodedSample:
    """One training sample ready for the model; ``vision`` is ``[T, F, C, H, W]`` or None."""

    input_ids: list[int]
    labels: list[int]
    vision: torch.Tensor | None
    group: str = ""
    dataset: str = ""
    id: str = ""


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    labels: torch.Tensor  # [B, L], IGNORE_INDEX where not supervised
    vision_x: torch.Tensor | None  # [B, T, F, C, H, W]
    groups: list[str]
    ids: list[str]
    index: int = -1  # position of this micro-batch in this rank's stream
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> samples dropped from it
    warnings: list[str] = field(default_factory=list)
    # "GROUP.name" -> {"drawn": records taken from that dataset, reason: records skipped}
    per_dataset: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return sum(1 for g in self.groups if g)

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(samples: list[EncodedSample], pad_id: int) -> Batch:
    """Pad to the longest sample.

    Images missing on T (fewer in-context examples) are zeros that no ``<image>`` token points
    to. A still image in a batch with video clips is repeated along F, as a static clip.
    """
    if not samples:
        raise ValueError("collate needs at least one sample")
    length = max(len(s.input_ids) for s in samples)
    b = len(samples)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((b, length), dtype=torch.long)
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        input_ids[i, :n] = torch.tensor(s.input_ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(s.labels, dtype=torch.long)
        attention[i, :n] = 1
    vision_x = None
    with_vision = [s.vision for s in samples if s.vision is not None]
    if with_vision:
        t = max(v.shape[0] for v in with_vision)
        f = max(v.shape[1] for v in with_vision)
        c, h, w = with_vision[0].shape[2:]
        vision_x = torch.zeros((b, t, f, c, h, w), dtype=with_vision[0].dtype)
        for i, s in enumerate(samples):
            if s.vision is None:
                continue
            v = s.vision
            if v.shape[2:] != (c, h, w):
                raise ValueError(f"sample {s.id}: image size {tuple(v.shape[2:])} differs from {(c, h, w)}")
            vision_x[i, : v.shape[0], : v.shape[1]] = v
            if v.shape[1] < f:
                vision_x[i, : v.shape[0], v.shape[1] :] = v[:, -1:]
    return Batch(
        input_ids=input_ids,
        attention_mask=attention,
        labels=labels,
        vision_x=vision_x,
        groups=[s.group for s in samples],
        ids=[s.id for s in samples],
    )
