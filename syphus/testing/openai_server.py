"""A local OpenAI-compatible server with configurable latency and injected faults.

Serves ``/v1/chat/completions``, ``/v1/models``, the OpenAI Batch API (``/v1/files``,
``/v1/batches``) and the Anthropic Message Batches API (``/v1/messages/batches``) on
127.0.0.1. Replies are deterministic functions of the question (``Q: ...`` / ``A: ...`` lines
built from the last user message), so a client can check it got the right answer. Image parts
(OpenAI ``image_url`` data URLs, Anthropic base64 ``image`` blocks) are decoded: an undecodable
one gets a 400, and the reply gains a pair whose answer states each image's size and mean colour
(``IMAGE 1: 64x48 mean=(255,0,0)``), so a test can prove which image reached which request.

Every request is counted per key (sha256 of the canonical request body), so a test can see
whether anything was asked twice. Faults:

* ``fault_rate``: fault name -> probability, drawn per attempt (seeded);
* ``first_faults``: faults for the first attempts of every key, in order (then success);
* a user message containing ``FAULT:<name>`` always gets that fault.

Fault names: ``429`` (with ``Retry-After``), ``500``, ``hang`` (sleep past any sane timeout),
``reset`` (drop the connection), ``malformed`` (200 with broken JSON), ``empty`` (empty
content), ``truncated`` (half the content, ``finish_reason: length``), ``401``, ``404``.

Run in a thread (``with OpenAIServer(cfg) as srv: srv.base_url``) or as a process:
``python -m syphus.testing.openai_server --port-file F --latency lognormal:0.5:0.5``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import math
import random
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

FAULTS = ("429", "500", "hang", "reset", "malformed", "empty", "truncated", "401", "404")


@dataclass
class ServerConfig:
    latency: str = "const:0"  # const:S | lognormal:MEAN:SIGMA | uniform:LO:HI
    fault_rate: dict[str, float] = field(default_factory=dict)
    first_faults: list[str] = field(default_factory=list)
    retry_after: float = 0.2
    hang_s: float = 3600.0
    models: list[str] | None = None  # None: any model name is served
    api_key: str | None = None  # when set, requests must carry "Authorization: Bearer <key>"
    echo_credentials: bool = False  # error messages quote the Authorization header back, as some servers do
    batch_delay: float = 0.3  # seconds before a submitted batch reports completion
    seed: int = 0

    def __post_init__(self) -> None:
        # A misspelt fault would otherwise never fire, and a fault test would pass without testing.
        unknown = sorted(set(self.fault_rate) - set(FAULTS)) + [
            f for f in self.first_faults if f not in FAULTS
        ]
        if unknown:
            raise ValueError(f"unknown fault {unknown[0]!r} (known: {', '.join(FAULTS)})")


def sample_latency(spec: str, rng: random.Random) -> float:
    kind, *args = spec.split(":")
    vals = [float(a) for a in args]
    if kind == "const":
        return vals[0] if vals else 0.0
    if kind == "uniform":
        return rng.uniform(vals[0], vals[1])
    if kind == "lognormal":
        mean, sigma = vals
        # lognormal with the requested mean: mu = ln(mean) - sigma^2 / 2
        return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma) if mean > 0 else 0.0
    raise ValueError(f"unknown latency spec {spec!r}")


def body_key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# A stand-in "translation" per language: every word becomes this word, numbers are kept. It is
# not a translation, but it is the right script (or, for Latin-script languages, a word only
# that language's stopword list has), so the translate task's validation accepts it.
PSEUDO_WORDS = {
    "zh": "译文",
    "ja": "やくぶん",
    "ko": "번역",
    "ar": "ترجمة",
    "es": "el",
    "de": "der",
    "fr": "le",
}
_TRANSLATE_RE = re.compile(r"^Translate into (?P<name>.+?) \(\d+ pairs?\):")
_PAIR_RE = re.compile(r"^Question: (?P<q>.*)\nAnswer: (?P<a>.*)$", re.MULTILINE)


def pseudo_translation(user: str) -> str | None:
    """For a translate-task query, the same pairs in ``PSEUDO_WORDS`` (None for other queries)."""
    from syphus.tasks.langcheck import LANGUAGE_NAMES

    m = _TRANSLATE_RE.match(user)
    if not m:
        return None
    lang = next((code for code, name in LANGUAGE_NAMES.items() if name == m.group("name")), None)
    word = PSEUDO_WORDS.get(lang or "")
    if word is None:
        return None

    def render(text: str) -> str:
        return " ".join(t if any(c.isdigit() for c in t) else word for t in text.split())

    pairs = _PAIR_RE.findall(user)
    return "".join(f"Question: {render(q)}\nAnswer: {render(a)}\n" for q, a in pairs)


class BadImage(ValueError):
    """An image part the server cannot decode (answered with a 400)."""


def _image_bytes(block: dict) -> bytes | None:
    """The bytes of an OpenAI ``image_url`` data URL or an Anthropic base64 ``image`` block."""
    import base64
    import binascii

    if block.get("type") == "image_url":
        url = (block.get("image_url") or {}).get("url", "")
        if not url.startswith("data:") or ";base64," not in url:
            raise BadImage(f"image_url is not a base64 data URL: {url[:40]!r}")
        data = url.split(",", 1)[1]
    elif block.get("type") == "image":
        data = (block.get("source") or {}).get("data", "")
    else:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadImage(f"invalid base64 in an image part ({e})") from e


def describe_image(data: bytes) -> str:
    """``WxH mean=(r,g,b)`` of an encoded image; BadImage if it does not decode."""
    import io

    from PIL import Image, ImageStat

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if im.format == "JPEG":
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))  # a mean needs few pixels
            rgb = im.convert("RGB")
    except Exception as e:  # PIL raises many types for bad bytes
        raise BadImage(f"cannot decode an image part ({type(e).__name__})") from e
    mean = tuple(round(v) for v in ImageStat.Stat(rgb).mean)
    return f"{width}x{height} mean=({mean[0]},{mean[1]},{mean[2]})"


def image_lines(messages: list[dict]) -> list[str]:
    """``IMAGE i: WxH mean=(r,g,b)`` for every image part of the messages, in order."""
    out = []
    for m in messages:
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for b in content:
            data = _image_bytes(b) if isinstance(b, dict) else None
            if data is not None:
                out.append(f"IMAGE {len(out) + 1}: {describe_image(data)}")
    return out


def answer_for(messages: list[dict]) -> str:
    """The deterministic reply: two Q/A pairs derived from the last user message (or, for a
    translate-task query, its pairs in a pseudo-translation), and a third pair stating each
    image's size and mean colour when the request carries images."""
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if isinstance(user, list):  # Anthropic/OpenAI content blocks
        user = " ".join(b.get("text", "") for b in user if isinstance(b, dict))
    translated = pseudo_translation(str(user))
    if translated is not None:
        return translated
    words = str(user).split()
    head = " ".join(words[:8]) or "nothing"
    tag = hashlib.sha1(str(user).encode()).hexdigest()[:8]
    images = image_lines(messages)
    seen = f"Q: What do the images show?\nA: {'; '.join(images)}\n" if images else ""
    return (
        f"Q: What does the annotation say first?\nA: It begins with: {head}.\n"
        f"Q: What is the tag of this annotation?\nA: The tag is {tag}.\n{seen}"
    )


def _ntokens(text: str) -> int:
    return max(1, len(text.split()))


class _State:
    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.requests: Counter[str] = Counter()  # per key, every attempt that reached the handler
        self.completed: Counter[str] = Counter()  # per key, 200 replies with real content sent
        self.total = 0
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.anthropic_batches: dict[str, dict] = {}


def _pick_fault(st: _State, key: str, attempt: int, messages: list[dict]) -> str | None:
    for m in messages:
        c = m.get("content")
        if isinstance(c, str) and "FAULT:" in c:
            return c.split("FAULT:", 1)[1].split()[0].strip(".,")
    if attempt < len(st.cfg.first_faults):
        return st.cfg.first_faults[attempt]
    for name, p in st.cfg.fault_rate.items():
        if st.rng.random() < p:
            return name
    return None


def _openai_error(
    status: int, message: str, code: str | None = None, headers: dict | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "code": code}},
        status=status,
        headers=headers,
    )


def _chat_body(model: str, content: str, finish: str, prompt_tokens: int) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _ntokens(content) if content else 0,
            "total_tokens": prompt_tokens + (_ntokens(content) if content else 0),
        },
    }


def _prompt_tokens(messages: list[dict]) -> int:
    def text(c) -> str:  # image data is not text: count the text blocks only
        return (
            " ".join(b.get("text", "") for b in c if isinstance(b, dict)) if isinstance(c, list) else str(c)
        )

    return sum(_ntokens(text(m.get("content", ""))) for m in messages)


def _echo(st: _State, request: web.Request) -> str:
    return (
        f" You sent: Authorization: {request.headers.get('Authorization', '')}"
        if st.cfg.echo_credentials
        else ""
    )


def _check_auth(st: _State, request: web.Request) -> web.Response | None:
    if st.cfg.api_key is None:
        return None
    auth = request.headers.get("Authorization", "")
    key = request.headers.get("x-api-key", "")
    if auth != f"Bearer {st.cfg.api_key}" and key != st.cfg.api_key:
        return _openai_error(401, "Incorrect API key provided." + _echo(st, request), "invalid_api_key")
    return None


def _check_model(st: _State, model: str) -> web.Response | None:
    if st.cfg.models is not None and model not in st.cfg.models:
        return _openai_error(
            404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found"
        )
    return None


STATE: web.AppKey[_State] = web.AppKey("state", _State)


def make_app(cfg: ServerConfig) -> web.Application:
    st = _State(cfg)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # injected resets are not news
    app = web.Application(client_max_size=256 << 20)
    app[STATE] = st

    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return _openai_error(400, "could not parse the JSON body of your request")
        key = body_key(body)
        attempt = st.requests[key]
        st.requests[key] += 1
        st.total += 1
        if bad := _check_auth(st, request):
            return bad
        if bad := _check_model(st, str(body.get("model"))):
            return bad
        messages = body.get("messages") or []
        fault = _pick_fault(st, key, attempt, messages)
        delay = sample_latency(cfg.latency, st.rng)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault == "429":
            return _openai_error(
                429, "Rate limit reached", "rate_limit_exceeded", {"Retry-After": f"{cfg.retry_after:g}"}
            )
        if fault == "500":
            return _openai_error(
                500, "The server had an error while processing your request." + _echo(st, request)
            )
        if fault == "401":
            return _openai_error(401, "Incorrect API key provided." + _echo(st, request), "invalid_api_key")
        if fault == "404":
            return _openai_error(404, "The model does not exist", "model_not_found")
        if fault == "hang":
            await asyncio.sleep(cfg.hang_s)
        if fault == "reset":
            request.transport.abort() if request.transport else None
            raise ConnectionResetError("injected reset")
        if fault == "malformed":
            return web.Response(
                body=b'{"id": "chatcmpl-x", "choices": [{"message": ', content_type="application/json"
            )
        model = str(body.get("model"))
        try:
            text = answer_for(messages)
        except BadImage as e:
            return _openai_error(400, f"Invalid image: {e}", "invalid_image")
        ptok = _prompt_tokens(messages)
        if fault == "empty":
            return web.json_response(_chat_body(model, "", "stop", ptok))
        if fault == "truncated":
            return web.json_response(_chat_body(model, text[: len(text) // 2], "length", ptok))
        st.completed[key] += 1
        return web.json_response(_chat_body(model, text, "stop", ptok))

    async def models(request: web.Request) -> web.Response:
        names = cfg.models or ["test-model"]
        return web.json_response({"object": "list", "data": [{"id": n, "object": "model"} for n in names]})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {"total": st.total, "requests": dict(st.requests), "completed": dict(st.completed)}
        )

    # -- OpenAI Batch API ------------------------------------------------------------------

    async def upload_file(request: web.Request) -> web.Response:
        if bad := _check_auth(st, request):
            return bad
        reader = await request.multipart()
        data, purpose = b"", "batch"
        async for part in reader:
            if part.name == "file":
                data = await part.read()
            elif part.name == "purpose":
                purpose = (await part.read()).decode()
        fid = f"file-{uuid.uuid4().hex[:16]}"
        st.files[fid] = data
        return web.json_response({"id": fid, "object": "file", "bytes": len(data), "purpose": purpose})

    async def file_content(request: web.Request) -> web.Response:
        fid = request.match_info["fid"]
        if fid not in st.files:
            return _openai_error(404, f"No such File object: {fid}")
        return web.Response(body=st.files[fid], content_type="application/jsonl")

    def _answer_line(line: dict) -> dict:
        body = line["body"]
        key = body_key(body)
        st.requests[key] += 1
        st.total += 1
        if cfg.models is not None and body.get("model") not in cfg.models:
            return {"id": uuid.uuid4().hex, "custom_id": line["custom_id"],
                    "response": {"status_code": 404, "body": {"error": {"message": "model not found"}}}, "error": None}  # fmt: skip
        messages = body.get("messages") or []
        fault = _pick_fault(st, key, st.requests[key] - 1, messages)
        if fault in ("500", "429"):
            return {"id": uuid.uuid4().hex, "custom_id": line["custom_id"], "response": None,
                    "error": {"code": "server_error", "message": "injected failure"}}  # fmt: skip
        try:
            text = answer_for(messages)
        except BadImage as e:
            return {"id": uuid.uuid4().hex, "custom_id": line["custom_id"],
                    "response": {"status_code": 400, "body": {"error": {"message": f"Invalid image: {e}"}}},
                    "error": None}  # fmt: skip
        st.completed[key] += 1
        resp = _chat_body(str(body.get("model")), text, "stop", _prompt_tokens(messages))
        return {"id": uuid.uuid4().hex, "custom_id": line["custom_id"],
                "response": {"status_code": 200, "body": resp}, "error": None}  # fmt: skip

    def _refresh_batch(b: dict) -> None:
        if b["status"] != "completed" and time.time() - b["created_at"] >= cfg.batch_delay:
            lines = [json.loads(x) for x in st.files[b["input_file_id"]].decode().splitlines() if x.strip()]
            out = [_answer_line(x) for x in lines]
            ok = [x for x in out if x["error"] is None]
            bad = [x for x in out if x["error"] is not None]
            fid = f"file-{uuid.uuid4().hex[:16]}"
            st.files[fid] = "".join(json.dumps(x) + "\n" for x in ok).encode()
            b["output_file_id"] = fid
            if bad:
                eid = f"file-{uuid.uuid4().hex[:16]}"
                st.files[eid] = "".join(json.dumps(x) + "\n" for x in bad).encode()
                b["error_file_id"] = eid
            b["status"] = "completed"
            b["request_counts"] = {"total": len(out), "completed": len(ok), "failed": len(bad)}
        elif b["status"] == "validating":
            b["status"] = "in_progress"

    async def create_batch(request: web.Request) -> web.Response:
        if bad := _check_auth(st, request):
            return bad
        body = await request.json()
        fid = body.get("input_file_id")
        if fid not in st.files:
            return _openai_error(400, f"input_file_id {fid} not found")
        bid = f"batch_{uuid.uuid4().hex[:16]}"
        st.batches[bid] = {
            "id": bid, "object": "batch", "endpoint": body.get("endpoint"), "input_file_id": fid,
            "completion_window": body.get("completion_window", "24h"), "status": "validating",
            "created_at": time.time(), "output_file_id": None, "error_file_id": None, "errors": None,
        }  # fmt: skip
        return web.json_response(st.batches[bid])

    async def get_batch(request: web.Request) -> web.Response:
        bid = request.match_info["bid"]
        if bid not in st.batches:
            return _openai_error(404, f"No batch found with id '{bid}'")
        b = st.batches[bid]
        _refresh_batch(b)
        return web.json_response(b)

    # -- Anthropic Message Batches -----------------------------------------------------------

    async def create_anthropic_batch(request: web.Request) -> web.Response:
        if bad := _check_auth(st, request):
            return bad
        body = await request.json()
        bid = f"msgbatch_{uuid.uuid4().hex[:16]}"
        st.anthropic_batches[bid] = {
            "id": bid,
            "requests": body["requests"],
            "created": time.time(),
            "results": None,
        }
        return web.json_response(_anthropic_view(st.anthropic_batches[bid], str(request.url.origin())))

    def _anthropic_view(b: dict, origin: str) -> dict:
        done = time.time() - b["created"] >= cfg.batch_delay
        if done and b["results"] is None:
            results = []
            for r in b["requests"]:
                params = r["params"]
                msgs = list(params.get("messages") or [])
                if params.get("system"):
                    msgs = [{"role": "system", "content": params["system"]}, *msgs]
                key = body_key({"model": params.get("model"), "messages": msgs})
                st.requests[key] += 1
                st.total += 1
                if cfg.models is not None and params.get("model") not in cfg.models:
                    results.append({"custom_id": r["custom_id"], "result": {"type": "errored", "error": {
                        "type": "not_found_error", "message": "model not found"}}})  # fmt: skip
                    continue
                try:
                    text = answer_for(msgs)
                except BadImage as e:
                    results.append({"custom_id": r["custom_id"], "result": {"type": "errored", "error": {
                        "type": "invalid_request_error", "message": f"Invalid image: {e}"}}})  # fmt: skip
                    continue
                st.completed[key] += 1
                results.append({"custom_id": r["custom_id"], "result": {"type": "succeeded", "message": {
                    "id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant",
                    "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": _prompt_tokens(msgs), "output_tokens": _ntokens(text)}}}})  # fmt: skip
            b["results"] = results
        return {
            "id": b["id"], "type": "message_batch",
            "processing_status": "ended" if done else "in_progress",
            "request_counts": {"processing": 0 if done else len(b["requests"]), "succeeded": len(b["requests"]) if done else 0,
                               "errored": 0, "canceled": 0, "expired": 0},
            "results_url": f"{origin}/v1/messages/batches/{b['id']}/results" if done else None,
        }  # fmt: skip

    async def get_anthropic_batch(request: web.Request) -> web.Response:
        bid = request.match_info["bid"]
        if bid not in st.anthropic_batches:
            return web.json_response(
                {"type": "error", "error": {"type": "not_found_error", "message": bid}}, status=404
            )
        return web.json_response(_anthropic_view(st.anthropic_batches[bid], str(request.url.origin())))

    async def anthropic_results(request: web.Request) -> web.Response:
        b = st.anthropic_batches.get(request.match_info["bid"])
        if b is None or b["results"] is None:
            return web.json_response(
                {"type": "error", "error": {"type": "not_found_error", "message": "no results"}}, status=404
            )
        return web.Response(
            body="".join(json.dumps(r) + "\n" for r in b["results"]).encode(),
            content_type="application/x-jsonl",
        )

    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/v1/files", upload_file)
    app.router.add_get("/v1/files/{fid}/content", file_content)
    app.router.add_post("/v1/batches", create_batch)
    app.router.add_get("/v1/batches/{bid}", get_batch)
    app.router.add_post("/v1/messages/batches", create_anthropic_batch)
    app.router.add_get("/v1/messages/batches/{bid}", get_anthropic_batch)
    app.router.add_get("/v1/messages/batches/{bid}/results", anthropic_results)
    return app


class OpenAIServer:
    """The server on 127.0.0.1 and an ephemeral port, in a background thread."""

    def __init__(self, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.app: web.Application | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def state(self) -> _State:
        return self.app[STATE]

    def start(self) -> OpenAIServer:
        self._thread = threading.Thread(target=self._run, name="openai-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("test server did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self.app = make_app(self.config)
        runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def duplicates(self) -> int:
        """Keys that got more than one successful reply."""
        return sum(1 for n in self.state.completed.values() if n > 1)


def main() -> None:
    p = argparse.ArgumentParser(description="Local OpenAI-compatible test server with injected faults.")
    p.add_argument("--port", type=int, default=0, help="port (0: ephemeral)")
    p.add_argument("--port-file", type=Path, help="write the chosen port here once listening")
    p.add_argument("--latency", default="const:0", help="const:S | lognormal:MEAN:SIGMA | uniform:LO:HI")
    p.add_argument("--fault", action="append", default=[], help="NAME=PROB, e.g. 429=0.05 (repeatable)")
    p.add_argument("--retry-after", type=float, default=0.2, help="seconds sent with 429 replies")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if any("=" not in f for f in a.fault):
        p.error("--fault: expected NAME=PROB, e.g. 429=0.05")
    try:
        cfg = ServerConfig(
            latency=a.latency,
            fault_rate={k: float(v) for k, v in (f.split("=", 1) for f in a.fault)},
            retry_after=a.retry_after,
            seed=a.seed,
        )
    except ValueError as e:
        p.error(f"--fault: {e}")

    async def serve() -> None:
        runner = web.AppRunner(make_app(cfg), access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", a.port, backlog=2048)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        if a.port_file:
            tmp = a.port_file.with_suffix(".tmp")
            tmp.write_text(str(port))
            tmp.replace(a.port_file)
        print(f"listening on http://127.0.0.1:{port}/v1", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
