"""Prices per token from litellm's bundled price table, read without importing litellm.

litellm ships its table as ``model_prices_and_context_window_backup.json`` inside the package;
with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` that file is exactly what litellm itself uses. Reading
it directly costs ~50 ms instead of the ~2.7 s of ``import litellm``.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

LOCAL_PREFIX = "local/"


@dataclass(frozen=True)
class Price:
    input_per_token: float
    output_per_token: float
    known: bool  # False: the model is not in the table, costs are reported as 0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input_per_token + completion_tokens * self.output_per_token


@lru_cache(maxsize=1)
def _table() -> dict[str, dict]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(spec.submodule_search_locations[0]) / "model_prices_and_context_window_backup.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=256)
def price_of(model: str, *, batch: bool = False) -> Price:
    """Price of a model string as written on the command line (``openai/gpt-4o``, ``gpt-4o``, ...).

    Batch APIs cost half (OpenAI Batch API and Anthropic Message Batches both bill 50%); the
    table's ``*_batches`` prices are used where it has them.
    """
    from curation.pretrained import resolve_model

    if model.startswith(LOCAL_PREFIX) or resolve_model(model) is not None:  # weights on this machine
        return Price(0.0, 0.0, True)
    table = _table()
    entry = None
    for name in (model, model.split("/", 1)[-1]):
        if name in table and "input_cost_per_token" in table[name]:
            entry = table[name]
            break
    if entry is None:
        return Price(0.0, 0.0, False)
    pin = float(entry.get("input_cost_per_token") or 0.0)
    pout = float(entry.get("output_cost_per_token") or 0.0)
    if batch:
        pin = float(entry.get("input_cost_per_token_batches") or pin / 2)
        pout = float(entry.get("output_cost_per_token_batches") or pout / 2)
    return Price(pin, pout, True)


def estimate_tokens(messages: list[dict]) -> int:
    """A cheap prompt-size estimate (~4 characters a token for English, plus a few per message)."""
    from syphus.engine.images import text_of  # image parts are counted by their own rule

    return sum(len(text_of(m.get("content", ""))) // 4 + 4 for m in messages)
