"""LLM backends behind one coroutine: ``await backend.complete(request) -> Completion``.

A backend raises :class:`Retryable` for what may pass (429, 5xx, timeouts, dropped
connections, a garbled body), :class:`FatalBackendError` for what will not (bad key, unknown
model, wrong URL: the run stops at once), and :class:`RequestFailed` for a request the
provider rejects on its own merits (e.g. too long): that request is logged as an error and
the run goes on.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.errors import SyphusError


@dataclass
class ChatRequest:
    key: str
    model: str
    messages: list[dict[str, Any]]  # content: text, or parts with image references (engine/images.py)
    params: dict[str, Any]  # temperature, max_tokens, ...
    task: str | None = None
    source_id: str | None = None
    attempts: int = 0
    est_prompt_tokens: int = 0
    ctx: Any = field(default=None, repr=False)  # the annotation this request came from
    # further annotations whose prompt is identical: asked once, the reply's pairs go to each
    shared: list[Any] = field(default_factory=list, repr=False)


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


class Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RequestFailed(Exception):
    """The provider rejected this one request; retrying it would not help."""


class FatalBackendError(SyphusError):
    """Every further request would fail the same way: stop the run."""


class Backend(Protocol):
    name: str

    async def complete(self, req: ChatRequest) -> Completion: ...

    async def aclose(self) -> None: ...


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify_status(
    status: int, body: str, *, where: str, model: str, retry_after: float | None = None
) -> Exception:
    """The exception for a non-2xx reply. ``where`` names the endpoint (never the key); a key
    the server quotes back is redacted before the message is cut or shown."""
    from syphus.engine.keys import redact

    detail = redact(_error_message(redact(body) or ""))
    if status == 429:
        return Retryable(f"429 rate limited by {where}: {detail}", retry_after)
    if status >= 500 or status == 408:
        return Retryable(f"{status} from {where}: {detail}", retry_after)
    if status in (401, 403):
        return FatalBackendError(
            f"{where}: {status} {'authentication failed' if status == 401 else 'permission denied'}: {detail}",
            hint="check the API key in the environment or ~/.config/syphus/config.toml",
        )
    low = detail.lower()
    if status == 404 or (
        status == 400 and "model" in low and ("not found" in low or "does not exist" in low)
    ):
        return FatalBackendError(
            f"{where}: {status} for model '{model}': {detail}", hint="check --model and --api-base"
        )
    return RequestFailed(f"{status} from {where}: {detail}")


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return (body or "").strip()[:200] or "no body"
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:200]
        return str(err)[:200]
    return str(data)[:200]


def completion_from_openai(data: Any) -> Completion:
    """Read an OpenAI chat.completion body; anything unexpected is a garbled reply (retryable)."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        raise Retryable(f"unexpected reply shape ({type(e).__name__}: {e})") from e


class HttpBackend:
    """A lean OpenAI-compatible client (vLLM, SGLang, llama.cpp server, OpenAI itself) on aiohttp.

    One pooled session, one POST per request, no per-request object graph: this is the path for
    high request rates, where litellm's ~3 ms of CPU per request becomes the limit. aiohttp
    rather than httpx because it spends about a third of the CPU per request, which is what
    bounds a single process at hundreds of requests a second.
    """

    name = "http"

    def __init__(self, api_base: str, *, api_key: str | None, concurrency: int, timeout: float, images=None):
        self.api_base = api_base.rstrip("/")
        self.images = images  # the ImageSource that holds the bytes of the requests' image parts
        self.url = f"{self.api_base}/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._concurrency = max(1, concurrency)
        self._timeout = timeout
        self._session = None  # created inside the running loop, on first use

    def _open(self):
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self._concurrency, limit_per_host=self._concurrency, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout, connect=min(self._timeout, 10.0)),
            # replies are parsed here, not by aiohttp; skip its cookie handling
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    @staticmethod
    def wire_model(model: str) -> str:
        # "openai/x" names the protocol, not the served model
        return model.split("/", 1)[1] if model.startswith("openai/") else model

    async def complete(self, req: ChatRequest) -> Completion:
        import aiohttp

        from syphus.engine.images import openai_messages

        session = self._session or self._open()
        messages = openai_messages(req.messages, self.images)
        body = {"model": self.wire_model(req.model), "messages": messages, **req.params}
        where = self.url
        try:
            async with session.post(where, data=json.dumps(body, ensure_ascii=False).encode()) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError as e:  # asyncio's and aiohttp's timeouts both derive from it
            raise Retryable(f"timeout from {where}") from e
        except aiohttp.ClientConnectorError as e:
            refused = isinstance(e.os_error, ConnectionRefusedError)
            if refused and req.attempts >= 3:
                raise FatalBackendError(f"{where}: connection refused", hint="is the server running?") from e
            raise Retryable(f"connection error from {where}: {type(e).__name__}") from e
        except (aiohttp.ClientError, ConnectionError) as e:
            raise Retryable(f"connection error from {where}: {type(e).__name__}") from e
        if status != 200:
            raise classify_status(
                status,
                raw.decode("utf-8", "replace"),
                where=where,
                model=req.model,
                retry_after=parse_retry_after(retry_after),
            )
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise Retryable(f"malformed JSON from {where}") from e
        return completion_from_openai(data)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class LiteLLMBackend:
    """Any provider litellm knows (``openai/``, ``anthropic/``, ``azure/``, ``ollama/``, ...)."""

    name = "litellm"

    def __init__(self, *, api_base: str | None, api_key: str | None, timeout: float, images=None):
        self.images = images
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        self._litellm = litellm
        self.api_base = api_base
        self.api_key = api_key
        self.timeout = timeout

    async def complete(self, req: ChatRequest) -> Completion:
        litellm = self._litellm
        kw: dict[str, Any] = {"timeout": self.timeout, "max_retries": 0, "num_retries": 0}
        if self.api_base:
            kw["api_base"] = self.api_base
        if self.api_key:
            kw["api_key"] = self.api_key
        where = self.api_base or req.model.split("/", 1)[0]
        from syphus.engine.images import openai_messages

        messages = openai_messages(req.messages, self.images)  # litellm maps OpenAI's form per provider
        try:
            resp = await litellm.acompletion(model=req.model, messages=messages, **req.params, **kw)
        except Exception as e:  # litellm maps every provider error onto OpenAI-like classes
            raise self._map_error(e, where, req.model) from e
        try:
            choice = resp.choices[0]
            usage = getattr(resp, "usage", None)
            return Completion(
                text=choice.message.content or "",
                finish_reason=choice.finish_reason,
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            )
        except (AttributeError, IndexError, TypeError) as e:
            raise Retryable(f"unexpected reply shape from {where}") from e

    def _map_error(self, e: Exception, where: str, model: str) -> Exception:
        from syphus.engine.keys import redact

        err = self._classify(e, where, model)
        err.args = tuple(redact(a) if isinstance(a, str) else a for a in err.args)  # litellm quotes keys
        return err

    def _classify(self, e: Exception, where: str, model: str) -> Exception:
        litellm = self._litellm
        status = getattr(e, "status_code", None)
        response = getattr(e, "response", None)
        headers = getattr(response, "headers", None) or {}
        retry_after = parse_retry_after(headers.get("retry-after") if hasattr(headers, "get") else None)
        if isinstance(e, (litellm.Timeout,)) or "timeout" in type(e).__name__.lower():
            return Retryable(f"timeout from {where}")
        if isinstance(e, litellm.APIConnectionError) and not isinstance(status, int):
            return Retryable(f"connection error from {where}: {str(e)[:120]}")
        if isinstance(status, int) and status >= 400:
            return classify_status(
                status, str(getattr(e, "message", e)), where=where, model=model, retry_after=retry_after
            )
        if isinstance(e, litellm.APIConnectionError):
            return Retryable(f"connection error from {where}: {str(e)[:120]}")
        return Retryable(f"{type(e).__name__} from {where}: {str(e)[:160]}")

    async def aclose(self) -> None:
        return None


BACKENDS = ("auto", "http", "litellm", "local")


def make_backend(
    model: str,
    *,
    api_base: str | None,
    concurrency: int,
    timeout: float,
    backend: str = "auto",
    images=None,
) -> Backend:
    """Pick the backend from the model string: ``local/...`` (or another name of the bundled
    SmolLM2, see ``syphus models``) runs in process, ``--api-base`` uses the lean HTTP client,
    anything else goes through litellm. ``backend`` forces one. ``images`` is the ImageSource
    holding the bytes of the requests' image parts (sent in the provider's form)."""
    from curation.pretrained import SMOLLM2, is_model
    from syphus.engine.keys import api_key

    if backend not in BACKENDS:
        raise SyphusError(f"--backend: unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    bundled = is_model(model, SMOLLM2)
    if backend == "local" or (
        backend == "auto" and (model.startswith("local/") or (bundled and not api_base))
    ):
        from syphus.engine.local import LocalBackend

        return LocalBackend(model)
    if backend == "litellm":
        provider = model.split("/", 1)[0] if "/" in model else "openai"
        key = api_key("api_base" if api_base else provider)
        return LiteLLMBackend(
            api_base=api_base, api_key=key or ("none" if api_base else None), timeout=timeout, images=images
        )
    if backend == "http" and not api_base:
        raise SyphusError(
            "--backend http needs --api-base (the endpoint's base URL, e.g. http://127.0.0.1:8000/v1)"
        )
    if api_base:
        return HttpBackend(
            api_base, api_key=api_key("api_base"), concurrency=concurrency, timeout=timeout, images=images
        )
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    return LiteLLMBackend(api_base=None, api_key=api_key(provider), timeout=timeout, images=images)
