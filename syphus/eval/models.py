"""Models under test: a saved Otter folder, or any vision model behind an endpoint.

Both answer a batch of (prompt text, encoded images) with one text each. An Otter answers greedily
through ``trainer.chat.Chat`` (the same batched, left-padded, KV-cached generation as ``syphus
chat``), so its answers do not depend on the batch size. An endpoint is asked through ``ask``: every
request is cached in a request log, a rerun pays for nothing twice, and ``--max-cost`` holds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from schemas.errors import SyphusError

if TYPE_CHECKING:
    from syphus.engine.pipeline import GenerateOptions
    from trainer.chat import Chat

Batch = list[tuple[str, list[bytes]]]


class EvalModel(Protocol):
    name: str

    def generate(self, batch: Batch, *, max_new_tokens: int) -> list[str]: ...


def slug(name: str) -> str:
    """A folder name for a model's results: ``runs/demo/model`` -> ``demo_model``, ``openai/gpt-4o``
    -> ``openai_gpt-4o``."""
    text = str(name).strip().replace("\\", "/")
    path = Path(text)
    if path.exists() and path.is_dir():
        text = "_".join(path.resolve().parts[-2:])
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return text or "model"


class OtterEvalModel:
    """A saved Otter folder (``syphus train`` or ``convert`` output), or a loaded ``Chat``."""

    def __init__(
        self,
        folder: str | Path | None = None,
        batch_size: int = 8,
        *,
        chat: Chat | None = None,
        name: str | None = None,
        prompt_format: str = "otter",
    ):
        from trainer.chat import Chat

        if chat is None:
            if folder is None:
                raise ValueError("OtterEvalModel needs a folder or a loaded Chat")
            chat = Chat.load(folder, prompt_format)
        self.chat = chat
        self.folder = Path(folder) if folder is not None else None
        self.batch_size = batch_size
        self.name = name or (str(folder) if folder is not None else "otter")

    def describe(self) -> dict[str, Any]:
        """What identifies the model in a results file: its folder and a digest of its config and
        weights' size and time (cheap; a retrained folder gets a new digest)."""
        out: dict[str, Any] = {"kind": "otter", "name": self.name}
        if self.folder is not None:
            out["folder"] = str(self.folder)
            h = hashlib.sha256()
            for f in sorted(self.folder.glob("*")):
                if f.is_file() and (f.name == "config.json" or f.suffix == ".safetensors"):
                    st = f.stat()
                    h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
            out["fingerprint"] = h.hexdigest()[:16]
        return out

    def generate(self, batch: Batch, *, max_new_tokens: int) -> list[str]:
        from trainer.chat import Question, image_from_bytes

        questions = []
        for i, (text, images) in enumerate(batch):
            pics = [
                image_from_bytes(b, f"question {i + 1} of the batch, image {k + 1}")
                for k, b in enumerate(images)
            ]
            questions.append(Question(text, pics[0] if pics else None, more_images=pics[1:]))
        return self.chat.ask_many(questions, max_new_tokens=max_new_tokens, batch_size=self.batch_size)


def _store(store: Path):
    """``ask``'s cache: a folder that ask makes into a corpus on first use."""
    store.mkdir(parents=True, exist_ok=True)
    return store


class EndpointEvalModel:
    """A vision model behind an OpenAI-compatible or litellm endpoint, asked through ``ask``.

    Greedy (temperature 0) with ``max_tokens`` = the benchmark's ``max_new_tokens``; the replies live
    in ``store`` (``OUT/.requests``): a rerun after a kill asks only what was not answered.
    """

    def __init__(
        self,
        model: str,
        opts: GenerateOptions,
        *,
        store: Path,
        budget: Budget | None = None,
        task: str = "eval",
    ):
        from syphus.engine.images import supports_images

        if not supports_images(opts.model, opts.backend, opts.api_base):
            raise SyphusError(
                f"--model {model}: this model cannot take images; give a vision model "
                "(and --api-base for an OpenAI-compatible server)"
            )
        self.name = model
        self.opts = opts
        self.store = _store(store)
        self.images = opts.image_source(None)  # downscaled for the provider, encoded once per image
        self.budget = budget or Budget(opts.max_cost)
        self.task = task
        # One ask call carries many requests: the scheduler keeps `concurrency` in flight.
        self.batch_size = max(64, 4 * opts.concurrency)
        self.errors: list[str] = []

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "endpoint",
            "name": self.name,
            "api_base": self.opts.api_base,
            "backend": self.opts.backend,
        }

    def generate(self, batch: Batch, *, max_new_tokens: int) -> list[str]:
        from dataclasses import replace

        from syphus.engine.ask import Prompt
        from syphus.engine.images import with_images

        opts = replace(self.opts, temperature=0.0, max_tokens=max_new_tokens)
        prompts = []
        for text, images in batch:
            messages = [{"role": "user", "content": text}]
            if images:
                messages = with_images(messages, [self.images.part_from_bytes(b) for b in images])
            prompts.append(Prompt(key_extra="eval:model", messages=messages, task=self.task))
        result = self.budget.ask(prompts, self.store, opts, who="the model under test", images=self.images)
        out = []
        for reply in result.replies:
            if reply.text is None:
                self.errors.append(reply.error or "no reply")
            out.append(reply.text or "")
        return out


class Budget:
    """``--max-cost`` across every ask call of one evaluation (model under test and judge)."""

    def __init__(self, max_cost: float | None):
        self.max_cost = max_cost
        self.spent = 0.0

    def ask(self, prompts: list, store: Path, opts: GenerateOptions, *, who: str, images=None):
        """``ask`` with what is left of the budget as its ``--max-cost``; what it spent is counted,
        and a run the budget stopped is one error naming ``who`` was being asked."""
        from dataclasses import replace

        from syphus.engine.ask import ask

        if self.max_cost is not None:
            opts = replace(opts, max_cost=max(0.0, self.max_cost - self.spent))
        result = ask(prompts, store=store, opts=opts, images=images)
        self.spent += float(result.summary.get("cost_usd", 0.0) or 0.0)
        if result.status == "budget":
            raise SyphusError(
                f"--max-cost reached while asking {who}; answered requests are kept: raise --max-cost and rerun"
            )
        return result


class AskJudge:
    """The ``Judge`` benchmarks call (MathVista's extractor, MM-Vet's grader), built on ``ask``.

    Records what it asked: the judge model, the number of requests and a sha256 over every prompt,
    which the runner writes into the result's notes."""

    def __init__(
        self,
        model: str,
        opts: GenerateOptions,
        *,
        store: Path,
        budget: Budget | None = None,
        task: str = "eval:judge",
    ):
        self.model = model
        self.opts = opts
        self.store = _store(store)
        self.budget = budget or Budget(opts.max_cost)
        self.task = task
        self.digest = hashlib.sha256()
        self.requests = 0

    def __call__(self, items: list[tuple[str, list[dict]]]) -> list[str | None]:
        from dataclasses import replace

        from syphus.engine.ask import Prompt

        if not items:
            return []
        opts = replace(self.opts, model=self.model, temperature=0.0)
        prompts = [
            Prompt(key_extra="eval:judge", messages=m, source_id=sid, task=self.task) for sid, m in items
        ]
        for _, m in items:
            self.digest.update(json.dumps(m, sort_keys=True, ensure_ascii=False).encode())
        self.requests += len(items)
        result = self.budget.ask(prompts, self.store, opts, who=f"the judge {self.model}")
        return [r.text for r in result.replies]

    def begin(self) -> None:
        """Start counting afresh (one benchmark's requests per note)."""
        self.digest = hashlib.sha256()
        self.requests = 0

    def note(self) -> str | None:
        if not self.requests:
            return None
        return f"judge: {self.model}; {self.requests} requests; prompts sha256 {self.digest.hexdigest()[:16]}"


def resolve_model(
    model: str,
    *,
    batch_size: int,
    opts_for: Callable[[str], GenerateOptions],
    store: Path,
    budget: Budget | None = None,
    prompt_format: str = "otter",
    name: str | None = None,
) -> EvalModel:
    """``--model``: an existing folder is an Otter (anything else there is refused with a reason); a
    path-like name that does not exist is a missing folder; any other name is an endpoint model."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SyphusError(f"--model {model}: not a folder; give a model folder or an endpoint model name")
        if not (path / "config.json").is_file():
            raise SyphusError(
                f"--model {model}: not an Otter model folder (no config.json); give the `model` folder "
                "that `syphus train` or `syphus convert` wrote"
            )
        return OtterEvalModel(path, batch_size, name=name or model, prompt_format=prompt_format)
    if (
        model.startswith((".", "/", "~"))
        or model.endswith("/")
        or (path.parent != Path(".") and path.parent.is_dir())
    ):
        raise SyphusError(f"--model {model}: model folder not found")
    return EndpointEvalModel(model, opts_for(model), store=store, budget=budget, task="eval")
