"""``--batch``: the OpenAI Batch API and the Anthropic Message Batches API (half price).

Submit the missing requests (custom id = request key), store the batch id in the corpus at
once, poll, then collect the results into the request log like any other reply. A rerun
after a crash finds the open batch ids in ``request_batches`` and polls them instead of
submitting again; requests a batch did not answer (expired, failed) are submitted anew.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from schemas.errors import SyphusError
from syphus.engine.backends import (
    ChatRequest,
    Completion,
    FatalBackendError,
    classify_status,
    completion_from_openai,
)
from syphus.engine.images import ImageSource, anthropic_content, openai_messages, text_of
from syphus.engine.scheduler import Outcome

if TYPE_CHECKING:
    from syphus.engine.pipeline import Generation

DEFAULT_BASES = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com/v1"}
CHUNK = 10_000  # requests per batch (both APIs allow more; smaller batches finish sooner)
# bytes per batch: OpenAI takes input files up to 200 MB and Anthropic batches up to 256 MB; with
# images a batch fills by size long before 10,000 requests, and is built one batch at a time
MAX_BATCH_BYTES = 180 << 20
OPENAI_TERMINAL = {"completed", "failed", "expired", "cancelled"}


def provider_of(model: str) -> str:
    return "anthropic" if model.startswith("anthropic/") or model.startswith("claude") else "openai"


def wire_model(model: str) -> str:
    return model.split("/", 1)[1] if model.split("/", 1)[0] in ("openai", "anthropic") else model


class _Api:
    def __init__(self, provider: str, base: str, key: str | None, timeout: float):
        import httpx

        self.provider = provider
        self.base = base.rstrip("/")
        headers = {}
        if provider == "anthropic":
            headers["anthropic-version"] = "2023-06-01"
            if key:
                headers["x-api-key"] = key
        elif key:
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout))
        self.httpx = httpx

    async def call(self, method: str, path: str, model: str, **kw) -> Any:
        url = path if path.startswith("http") else f"{self.base}{path}"
        for attempt in range(6):
            try:
                resp = await self.client.request(method, url, **kw)
            except self.httpx.TransportError as e:
                if attempt == 5:
                    raise SyphusError(f"{url}: {type(e).__name__} after 6 attempts; rerun to resume") from e
                await asyncio.sleep(min(30, 2**attempt))
                continue
            if resp.status_code < 300:
                return resp
            err = classify_status(resp.status_code, resp.text, where=url, model=model)
            if isinstance(err, FatalBackendError) or attempt == 5 or resp.status_code < 429:
                raise err if isinstance(err, SyphusError) else SyphusError(str(err))
            await asyncio.sleep(min(30, 2**attempt))
        raise AssertionError("unreachable")

    def item(self, r: ChatRequest, images: ImageSource | None) -> bytes:
        """One request as the provider's batch item (a JSONL line for OpenAI, a ``requests``
        element for Anthropic), with its images in the provider's form."""
        model = wire_model(r.model)
        if self.provider == "openai":
            body = {"model": model, "messages": openai_messages(r.messages, images), **r.params}
            line = {"custom_id": r.key, "method": "POST", "url": "/v1/chat/completions", "body": body}
            return json.dumps(line, ensure_ascii=False).encode("utf-8")
        system = "\n\n".join(text_of(m["content"]) for m in r.messages if m["role"] == "system")
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": int(r.params.get("max_tokens") or 1024),
            "messages": [
                {**m, "content": anthropic_content(m["content"], images)}
                for m in r.messages
                if m["role"] != "system"
            ],
        }
        if system:
            params["system"] = system
        if "temperature" in r.params:
            params["temperature"] = r.params["temperature"]
        return json.dumps({"custom_id": r.key, "params": params}, ensure_ascii=False).encode("utf-8")

    async def submit(self, reqs: list[ChatRequest], images: ImageSource | None = None) -> str:
        """Submit requests as one batch; returns the batch id."""
        return await self.submit_items([self.item(r, images) for r in reqs], reqs[0].model)

    async def submit_items(self, items: list[bytes], model: str) -> str:
        """Submit serialized items (from ``item``) as one batch; returns the batch id."""
        model = wire_model(model)
        if self.provider == "openai":
            lines = b"".join(x + b"\n" for x in items)
            up = await self.call("POST", "/files", model, data={"purpose": "batch"},
                                 files={"file": ("syphus-batch.jsonl", lines, "application/jsonl")})  # fmt: skip
            resp = await self.call("POST", "/batches", model, json={
                "input_file_id": up.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})  # fmt: skip
            return resp.json()["id"]
        body = b'{"requests":[' + b",".join(items) + b"]}"
        resp = await self.call("POST", "/messages/batches", model, content=body,
                               headers={"Content-Type": "application/json"})  # fmt: skip
        return resp.json()["id"]

    async def poll(
        self, batch_id: str, model: str, interval: float
    ) -> list[tuple[str, Completion | None, str | None]]:
        """Wait until the batch ends; return (key, completion or None, error or None) per answered request."""
        path = f"/batches/{batch_id}" if self.provider == "openai" else f"/messages/batches/{batch_id}"
        while True:
            info = (await self.call("GET", path, model)).json()
            if self.provider == "openai" and info.get("status") in OPENAI_TERMINAL:
                return await self._openai_results(info, model)
            if self.provider == "anthropic" and info.get("processing_status") == "ended":
                return await self._anthropic_results(info, model)
            await asyncio.sleep(interval)

    async def _openai_results(self, info: dict, model: str) -> list:
        out = []
        for fid in (info.get("output_file_id"), info.get("error_file_id")):
            if not fid:
                continue
            text = (await self.call("GET", f"/files/{fid}/content", model)).text
            for line in text.splitlines():
                if not line.strip():
                    continue
                d = json.loads(line)
                resp = d.get("response") or {}
                if resp.get("status_code") == 200:
                    out.append((d["custom_id"], completion_from_openai(resp["body"]), None))
                else:
                    msg = (d.get("error") or {}).get("message") or json.dumps(resp.get("body"))[:200]
                    out.append((d["custom_id"], None, f"batch item failed: {msg}"))
        return out

    async def _anthropic_results(self, info: dict, model: str) -> list:
        text = (await self.call("GET", info["results_url"], model)).text
        out = []
        for line in text.splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            res = d.get("result") or {}
            if res.get("type") == "succeeded":
                msg = res["message"]
                usage = msg.get("usage") or {}
                body = "".join(b.get("text", "") for b in msg.get("content", []) if b.get("type") == "text")
                finish = "length" if msg.get("stop_reason") == "max_tokens" else "stop"
                out.append((d["custom_id"], Completion(body, finish, int(usage.get("input_tokens") or 0),
                                                       int(usage.get("output_tokens") or 0)), None))  # fmt: skip
            else:
                out.append(
                    (
                        d["custom_id"],
                        None,
                        f"batch item {res.get('type')}: {json.dumps(res.get('error'))[:200]}",
                    )
                )
        return out

    async def aclose(self) -> None:
        await self.client.aclose()


async def run_batch(gen: Generation, todo: list[ChatRequest]) -> str | None:
    """Resume open batches, submit the rest, collect everything. Returns 'budget' if --max-cost cut it."""
    from syphus.engine.keys import api_key

    opts = gen.opts
    provider = provider_of(opts.model)
    base = opts.api_base or DEFAULT_BASES[provider]
    api = _Api(provider, base, api_key(provider), opts.timeout)
    by_key = {r.key: r for r in todo}
    reason = None
    try:
        open_batches = [b for b in gen.log.open_batches(provider) if b["model"] == opts.model]
        pending = {k for b in open_batches for k in b["keys"]}
        fresh = [r for r in todo if r.key not in pending]
        if opts.max_cost is not None:
            spent, keep = 0.0, []
            for r in fresh:
                est = gen.price.cost(r.est_prompt_tokens, int(r.params.get("max_tokens") or 0))
                if spent + est > opts.max_cost:
                    reason = "budget"
                    break
                spent += est
                keep.append(r)
            fresh = keep
        batches = [(b["batch_id"], b["keys"]) for b in open_batches]
        chunk: list[str] = []
        items: list[bytes] = []
        size = 0
        for r in [*fresh, None]:
            item = api.item(r, gen.images) if r is not None else b""
            if chunk and (r is None or len(chunk) >= CHUNK or size + len(item) > MAX_BATCH_BYTES):
                bid = await api.submit_items(items, opts.model)
                gen.log.add_batch(
                    bid, provider, base, opts.model, chunk, gen.run_id
                )  # durable before we wait
                batches.append((bid, chunk))
                chunk, items, size = [], [], 0
            if r is not None:
                chunk.append(r.key)
                items.append(item)
                size += len(item) + 1
        t0 = time.time()
        results = await asyncio.gather(*(api.poll(bid, opts.model, opts.poll_interval) for bid, _ in batches))
        for (bid, keys), items in zip(batches, results, strict=True):
            for key, completion, error in items:
                req = by_key.get(key)
                if req is None:  # answered already by an earlier run, or from another command
                    continue
                req.attempts += 1
                o = Outcome(req, completion, error, req.attempts, t0, time.time() - t0)
                _account(gen, o)
                gen.on_outcome(o)
            gen.log.fold()
            gen.log.close_batch(bid, "collected")
            del keys
    except FatalBackendError:
        raise
    finally:
        await api.aclose()
    return reason


def _account(gen: Generation, o: Outcome) -> None:
    s = gen.stats
    if o.completion is None:
        s.errors += 1
        return
    s.done += 1
    s.prompt_tokens += o.completion.prompt_tokens
    s.completion_tokens += o.completion.completion_tokens
    s.cost += gen.price.cost(o.completion.prompt_tokens, o.completion.completion_tokens)
