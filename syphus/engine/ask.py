"""``ask``: prompts in, replies out, through the generation engine (cache, resume, cost cap).

The one way for code other than ``generate`` to send LLM requests: a judge, a model under test
behind an endpoint, an answer extractor. Each prompt's key hashes the model, its messages, the
parameters and the caller's ``key_extra``; keys the store's request log has finished are
answered from it without a request, the rest go through the scheduler (or a batch API) and
every reply is journaled as it arrives, so a killed run loses no received reply and a rerun
pays for none twice. Nothing is written to the instructions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.store import Corpus
from schemas.progress import Progress
from syphus.engine.backends import ChatRequest, Completion
from syphus.engine.pipeline import GenerateOptions, RequestRun
from syphus.engine.pricing import estimate_tokens
from syphus.engine.requestlog import Ingest, request_key
from syphus.engine.scheduler import Outcome

__all__ = ["AskResult", "Prompt", "Reply", "ask", "prompt_key"]

NOT_SENT_BUDGET = "not sent: --max-cost reached (rerun with a higher budget to ask it)"


@dataclass
class Prompt:
    key_extra: str  # what the caller folds into the key besides the messages (e.g. "judge:v1")
    messages: list[dict]  # may carry image parts
    source_id: str | None = None
    task: str | None = None  # stored in requests.task, e.g. "score", "eval:mme"


@dataclass
class Reply:
    key: str
    text: str | None
    error: str | None
    finish_reason: str | None
    cached: bool  # answered from the request log, no request sent


@dataclass
class AskResult:
    replies: list[Reply]  # in the order of the prompts
    summary: dict[str, Any] = field(default_factory=dict)  # generate's figures, status included

    @property
    def status(self) -> str:
        return str(self.summary.get("status"))


def prompt_key(model: str, prompt: Prompt, params: dict[str, Any]) -> str:
    """The request key of a prompt: the same question, parameters and ``key_extra`` give the
    same key in any run; ``key_extra`` keeps one caller's answers apart from another's."""
    return request_key(model, prompt.messages, {"params": params, "key_extra": prompt.key_extra})


class _Asking(RequestRun):
    """A run whose replies are handed back rather than parsed into pairs."""

    label = "ask"

    def __init__(self, corpus: Corpus, opts: GenerateOptions, progress: Progress | None, *, images: Any,
                 warn: Callable[[str], None] | None, deliver: Callable[[str, Reply], None]):  # fmt: skip
        super().__init__(corpus, opts, progress, images=images, warn=warn)
        self.deliver = deliver

    def ingest(self, req: ChatRequest, c: Completion) -> Ingest:
        return Ingest(self.run_id or "")  # nothing to parse: the row is complete as it stands

    def on_outcome(self, o: Outcome) -> None:
        super().on_outcome(o)  # durable first, then the caller hears of it
        c = o.completion
        if c is None:
            self.deliver(o.req.key, Reply(o.req.key, None, o.error, None, False))
        else:
            self.deliver(o.req.key, Reply(o.req.key, c.text, None, c.finish_reason, False))


def ask(prompts: list[Prompt], *, store: Corpus | Path, opts: GenerateOptions, images: Any = None,
        progress: Progress | None = None, on_reply: Callable[[Prompt, Reply], None] | None = None,
        warn: Callable[[str], None] | None = None) -> AskResult:  # fmt: skip
    """Answer every prompt, from the request log of ``store`` where it holds the reply, else by a
    request. ``store`` is an open corpus or a folder (made a corpus if new, e.g. a results
    folder's ``.requests``). A request that fails for good comes back as a reply with ``error``;
    a fatal backend error (bad key, unknown model, every endpoint down) is raised. With
    ``--max-cost`` spent, the prompts not sent come back with an error saying so and the
    summary's status is ``budget``. ``on_reply`` hears of each reply as it is known (cached
    ones first); ``images`` is the ImageSource that holds the bytes of image parts."""
    if isinstance(store, Corpus):
        return _ask(prompts, store, opts, images, progress, on_reply, warn)
    with Corpus(Path(store)) as corpus:
        return _ask(prompts, corpus, opts, images, progress, on_reply, warn)


def _ask(prompts: list[Prompt], corpus: Corpus, opts: GenerateOptions, images: Any, progress: Progress | None,
         on_reply: Callable[[Prompt, Reply], None] | None, warn: Callable[[str], None] | None) -> AskResult:  # fmt: skip
    params = opts.params()
    keys = [prompt_key(opts.model, p, params) for p in prompts]
    asking: dict[str, list[int]] = {}  # key -> positions of the prompts that share it
    for i, k in enumerate(keys):
        asking.setdefault(k, []).append(i)
    replies: list[Reply | None] = [None] * len(prompts)

    def deliver(key: str, reply: Reply) -> None:
        for i in asking[key]:
            replies[i] = reply
            if on_reply is not None:
                on_reply(prompts[i], reply)

    run = _Asking(corpus, opts, progress, images=images, warn=warn, deliver=deliver)
    # read after the log is open: opening it folds in the journal a killed run left
    cached = {rec.key: rec for rec in run.log.done_records(asking)}
    for key, rec in cached.items():
        deliver(key, Reply(key, rec.raw or "", None, rec.finish_reason, True))
    todo = [
        ChatRequest(key=k, model=opts.model, messages=prompts[pos[0]].messages, params=dict(params),
                    task=prompts[pos[0]].task, source_id=prompts[pos[0]].source_id,
                    est_prompt_tokens=estimate_tokens(prompts[pos[0]].messages))
        for k, pos in asking.items()
        if k not in cached
    ]  # fmt: skip
    run.start("ask", _config_of(opts, len(prompts)))
    lead = {"prompts": len(prompts), "distinct": len(asking), "cached": len(cached), "to_send": len(todo)}
    summary = run.execute(
        todo, lead, lambda: {"not_sent": sum(replies[p[0]] is None for p in asking.values())}
    )
    for k, pos in asking.items():
        if replies[pos[0]] is None:  # the budget stopped the run before this one went out
            deliver(k, Reply(k, None, NOT_SENT_BUDGET, None, False))
    return AskResult([r for r in replies if r is not None], summary)


def _config_of(opts: GenerateOptions, n: int) -> dict[str, Any]:
    from dataclasses import asdict

    return {**asdict(opts), "prompts": n}  # never holds a key: keys are read by the backends only
