"""Images in chat requests: provider-neutral image parts, their bytes, and each provider's form.

A request's messages carry image *references* (``{"type": "image", "sha256": ..., ...}``), never
bytes: the request key hashes them by the sha256 of exactly what will be sent, so re-importing
the same image asks nothing again and a changed image is asked anew, while a plan of millions of
requests holds only small dicts. :class:`ImageSource` owns the bytes: it reads an image from the
corpus once, downscales it when its longest side is over ``max_side`` (the only case where it
re-encodes), and keeps the bytes to send in a bounded LRU cache, so a retry never re-encodes.
Backends turn the parts into the provider's form at send time (:func:`openai_messages`,
:func:`anthropic_content`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from schemas.errors import SyphusError

if TYPE_CHECKING:
    from curation.store import Corpus

DETAILS = ("auto", "low", "high")
# Longest side images are downscaled to before they are sent. OpenAI fits an image in 2048 and
# then scales its shortest side to 768 for detail high: a 4:3 photo at 768 long side keeps all the
# detail that costs under 4 tiles, and most of the reply quality. Anthropic resizes anything over
# 1568 on the long side; 1092 is the largest square it takes without resizing (about 1.19 MP).
DEFAULT_MAX_SIDE = {"openai": 768, "anthropic": 1092}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
JPEG_QUALITY = 90  # for downscaled images only; images that fit are sent as stored


class ImageError(SyphusError):
    """An image the corpus lacks or cannot decode: its annotation is skipped with this reason."""

    def __init__(self, message: str, *, reason: str, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.reason = reason  # short and stable: the generate summary counts annotations by it


def provider_family(model: str, backend: str = "auto", api_base: str | None = None) -> str:
    """``anthropic`` for Claude models (their own message form and token rule), else ``openai``
    (OpenAI itself, every OpenAI-compatible endpoint, and litellm's input form)."""
    name = model.lower()
    if name.startswith(("anthropic/", "claude")) or "/claude" in name:
        return "anthropic"
    return "openai"


def default_max_side(model: str, backend: str = "auto", api_base: str | None = None) -> int:
    return DEFAULT_MAX_SIDE[provider_family(model, backend, api_base)]


def supports_images(model: str, backend: str, api_base: str | None) -> bool:
    """False where the model surely cannot take images: the in-process SmolLM2 (a text model),
    or a model litellm's table lists as a chat model without vision. Endpoints it cannot know
    about (``--api-base``) are assumed able; they answer a 400 otherwise."""
    from curation.pretrained import SMOLLM2, is_model

    if backend == "local" or (
        backend == "auto" and (model.startswith("local/") or (is_model(model, SMOLLM2) and not api_base))
    ):
        return False
    if api_base:
        return True
    from syphus.engine.pricing import _table

    table = _table()
    for name in (model, model.split("/", 1)[-1]):
        entry = table.get(name)
        if entry is None:
            continue
        if entry.get("supports_vision") is False:
            return False
        # litellm marks every OpenAI vision chat model; an unmarked OpenAI chat model is text-only
        if entry.get("litellm_provider") == "openai" and entry.get("mode") == "chat":
            return bool(entry.get("supports_vision"))
        return True
    return True


def require_images(model: str, backend: str, api_base: str | None, option: str = "--with-images") -> None:
    """Raise the one-line error for a text-only model before anything is sent."""
    if not supports_images(model, backend, api_base):
        raise SyphusError(
            f"--model {model}: this model cannot take images; drop {option} or choose a vision model "
            "(e.g. openai/gpt-4o-mini, or a VLM served with --api-base)"
        )


def _open_image(data: bytes):
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:160]


def fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size an image takes when its longest side is brought down to ``max_side``."""
    long = max(width, height)
    if long <= max_side:
        return width, height
    s = max_side / long
    return max(1, round(width * s)), max(1, round(height * s))


class ImageSource:
    """Image parts for requests, and the bytes to send for each part.

    ``part(id)`` reads the image from the corpus, checks it (a corpus image whose bytes no longer
    hash to the sha256 recorded at import, or that does not decode, raises :class:`ImageError`),
    downscales it to ``max_side`` if needed, and returns the part. Parts are small and kept per
    image id; sent bytes live in an LRU cache of ``cache_items`` images (and at most
    ``cache_bytes``), re-read or re-encoded on a miss by ``payload``.
    """

    def __init__(
        self,
        corpus: Corpus | None = None,
        *,
        max_side: int = 768,
        detail: str = "auto",
        cache_items: int = 4096,
        cache_bytes: int = 512 << 20,
    ):
        if detail not in DETAILS:
            raise SyphusError(f"--image-detail: unknown value '{detail}' (choose from {', '.join(DETAILS)})")
        if max_side < 16:
            raise SyphusError(f"--image-max-side {max_side}: too small (at least 16 pixels)")
        self.corpus = corpus
        self.max_side = max_side
        self.detail = detail
        self.cache_items = max(1, cache_items)
        self.cache_bytes = cache_bytes
        self._parts: dict[str, dict] = {}  # image id -> part (shared by every request using it)
        self._origin: dict[str, str | bytes] = {}  # sent sha -> corpus image id, or the caller's bytes
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._b64: OrderedDict[str, str] = OrderedDict()  # base64 of the parts of requests in flight
        self._lock = threading.Lock()
        self.encodes = 0  # downscale + encode operations (figures for tests and the benchmark)
        self.reads = 0  # image reads from the corpus

    # -- parts -----------------------------------------------------------------------------

    def part(self, image_id: str) -> dict:
        """The image part of a corpus image (the same dict for every request that uses it)."""
        p = self._parts.get(image_id)
        if p is not None:
            return p
        if self.corpus is None:
            raise SyphusError(f"image '{image_id}': no corpus to read it from")
        try:
            data = self.corpus.get_image(image_id)
        except SyphusError as e:
            missing = "unknown image id" in str(e)
            raise ImageError(
                f"image '{image_id}': {'not in the corpus' if missing else _one_line(e)}",
                reason="image not in the corpus" if missing else "image unreadable in the corpus",
            ) from e
        self.reads += 1
        recorded = self.corpus.has_images([image_id]).get(image_id)
        return self._remember(image_id, self._prepare(data, f"image '{image_id}'", recorded, image_id))

    def parts(self, image_ids: Iterable[str]) -> dict[str, dict | ImageError]:
        """Parts of many corpus images, read in shard order: id -> part, or the ImageError that
        makes it unusable. For planning a run: nothing is raised, every image is accounted for."""
        ids = list(dict.fromkeys(image_ids))
        wanted = [i for i in ids if i not in self._parts]
        out: dict[str, dict | ImageError] = {}
        if wanted and self.corpus is None:
            raise SyphusError("images were asked for but there is no corpus to read them from")
        for start in range(0, len(wanted), 10_000):
            chunk = wanted[start : start + 10_000]
            recorded = self.corpus.has_images(chunk)
            for iid in chunk:
                if iid not in recorded:
                    out[iid] = ImageError(
                        f"image '{iid}': not in the corpus", reason="image not in the corpus"
                    )
            try:
                for iid, data in self.corpus.iter_images([i for i in chunk if i in recorded]):
                    self.reads += 1
                    try:
                        self._remember(iid, self._prepare(data, f"image '{iid}'", recorded[iid], iid))
                    except ImageError as e:
                        out[iid] = e
            except SyphusError:  # a truncated shard: the rest one at a time, each with its reason
                for iid in chunk:
                    if iid in recorded and iid not in self._parts and iid not in out:
                        try:
                            self.part(iid)
                        except ImageError as err:
                            out[iid] = err
        return {i: out.get(i) or self._parts[i] for i in ids}

    def part_from_bytes(self, data: bytes) -> dict:
        """The part of an image not in a corpus (e.g. an eval benchmark's). The caller's bytes are
        referenced (not copied) to re-encode them on a cache miss."""
        sha = hashlib.sha256(data).hexdigest()
        key = f"bytes:{sha}"
        p = self._parts.get(key)
        if p is None:
            p = self._remember(key, self._prepare(data, "image bytes", None, data))
        return p

    def _remember(self, key: str, part: dict) -> dict:
        self._parts[key] = part
        return part

    def _prepare(self, data: bytes, where: str, recorded_sha: str | None, origin: str | bytes) -> dict:
        if recorded_sha is not None and hashlib.sha256(data).hexdigest() != recorded_sha:
            raise ImageError(
                f"{where}: its bytes in the corpus no longer match the sha256 recorded at import",
                reason="image corrupt in the corpus",
            )
        sent, width, height, media_type = self._encode(data, where)
        sha = hashlib.sha256(sent).hexdigest()
        with self._lock:
            self._origin.setdefault(sha, origin)
            self._put(sha, sent)
        return {"type": "image", "sha256": sha, "media_type": media_type, "width": width,
                "height": height, "detail": self.detail}  # fmt: skip

    def _encode(self, data: bytes, where: str) -> tuple[bytes, int, int, str]:
        """(bytes to send, width, height, media type): the stored bytes when they fit and are a
        format every provider takes, else a downscaled JPEG (PNG where there is transparency)."""
        try:
            im = _open_image(data)
            width, height = im.size
            fmt = (im.format or "").upper()
            if max(width, height) <= self.max_side and fmt in ("JPEG", "PNG"):
                return data, width, height, MEDIA_TYPES[fmt]
            tw, th = fit(width, height, self.max_side)
            if fmt == "JPEG":
                im.draft("RGB", (tw, th))  # decode at a DCT scale near the target: much less work
            im.load()
        except Exception as e:  # PIL raises many types for bad bytes
            raise ImageError(
                f"{where}: cannot decode ({type(e).__name__}: {_one_line(e)})",
                reason="image cannot be decoded",
            ) from e
        from PIL import Image

        alpha = im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info)
        im = im.convert("RGBA" if alpha else "RGB")
        if im.size != (tw, th):
            im = im.resize((tw, th), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if alpha:
            im.save(buf, format="PNG", optimize=False)
        else:
            im.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
        self.encodes += 1
        return buf.getvalue(), tw, th, "image/png" if alpha else "image/jpeg"

    # -- bytes -------------------------------------------------------------------------------

    def _put(self, sha: str, data: bytes) -> None:
        if sha in self._cache:
            self._cache.move_to_end(sha)
            return
        self._cache[sha] = data
        self._cached_bytes += len(data)
        while self._cache and (len(self._cache) > self.cache_items or self._cached_bytes > self.cache_bytes):
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= len(old)

    def payload(self, sha256: str) -> bytes:
        """The bytes to send for a part: from the cache, else read (and re-encoded) again."""
        with self._lock:
            data = self._cache.get(sha256)
            if data is not None:
                self._cache.move_to_end(sha256)
                return data
            origin = self._origin.get(sha256)
        if origin is None:
            raise SyphusError(f"image sha256 {sha256[:12]}...: not prepared by this ImageSource")
        if isinstance(origin, str):
            raw = self.corpus.get_image(origin)
            self.reads += 1
            where = f"image '{origin}'"
        else:
            raw, where = origin, "image bytes"
        sent = self._encode(raw, where)[0]
        if hashlib.sha256(sent).hexdigest() != sha256:
            raise ImageError(
                f"{where}: changed since the run was planned", reason="image changed during the run"
            )
        with self._lock:
            self._put(sha256, sent)
        return sent

    def b64(self, sha256: str) -> str:
        """Base64 of the payload; kept for the most recent parts so a retry does not redo it."""
        with self._lock:
            s = self._b64.get(sha256)
            if s is not None:
                self._b64.move_to_end(sha256)
                return s
        s = base64.b64encode(self.payload(sha256)).decode("ascii")
        with self._lock:
            self._b64[sha256] = s
            while len(self._b64) > 1024:
                self._b64.popitem(last=False)
        return s

    def data_url(self, part: dict) -> str:
        return f"data:{part['media_type']};base64,{self.b64(part['sha256'])}"


# -- messages ------------------------------------------------------------------------------------


def with_images(messages: list[dict], parts: list[dict]) -> list[dict]:
    """A copy of ``messages`` whose last user message carries ``parts`` after its text."""
    if not parts:
        return list(messages)
    out = list(messages)
    for i in range(len(out) - 1, -1, -1):
        if out[i].get("role") == "user":
            content = out[i].get("content")
            if isinstance(content, list):
                blocks = list(content)
            else:
                blocks = [{"type": "text", "text": content}] if content else []
            out[i] = {**out[i], "content": blocks + list(parts)}
            return out
    raise SyphusError("with_images: the messages have no user message to attach images to")


def has_images(messages: list[dict]) -> bool:
    return any(type(m.get("content")) is list for m in messages)


def image_parts(messages: list[dict]) -> list[dict]:
    return [
        b
        for m in messages
        if type(m.get("content")) is list
        for b in m["content"]
        if b.get("type") == "image"
    ]


def text_of(content: Any) -> str:
    """The text of a message's content, images left out (for size estimates and displays)."""
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if b.get("type") == "text")
    return str(content or "")


def _need(source: ImageSource | None) -> ImageSource:
    if source is None:
        raise SyphusError("a request carries images but the backend was given no ImageSource (images=...)")
    return source


def openai_messages(messages: list[dict], source: ImageSource | None) -> list[dict]:
    """The messages in OpenAI's chat form (also vLLM, SGLang and litellm's input): image parts
    become ``image_url`` data URLs with ``detail``. Text-only messages are returned as they are."""
    if not has_images(messages):
        return messages
    out = []
    for m in messages:
        content = m.get("content")
        if type(content) is not list:
            out.append(m)
            continue
        blocks = []
        for b in content:
            if b.get("type") == "image":
                blocks.append({"type": "image_url",
                               "image_url": {"url": _need(source).data_url(b), "detail": b.get("detail", "auto")}})  # fmt: skip
            else:
                blocks.append(b)
        out.append({**m, "content": blocks})
    return out


def anthropic_content(content: Any, source: ImageSource | None) -> Any:
    """A message's content in Anthropic's form: image parts become base64 ``image`` blocks."""
    if type(content) is not list:
        return content
    blocks = []
    for b in content:
        if b.get("type") == "image":
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": b["media_type"],
                                                       "data": _need(source).b64(b["sha256"])}})  # fmt: skip
        else:
            blocks.append({"type": "text", "text": b.get("text", "")})
    return blocks


# -- image tokens, by each provider's published rule -----------------------------------------------

RULES = {
    "openai": "OpenAI tiles: fit in 2048x2048, shortest side to 768, 85 + 170 per 512 px tile (low: 85)",
    "anthropic": "Anthropic: ceil(width*height/750) after resizing to <= 1568 long side and ~1.15 MP",
}


def openai_image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's published rule: detail low costs 85 tokens; high (and auto, counted as high, an
    upper bound) fits the image in 2048x2048, scales its shortest side down to 768, and costs 85
    plus 170 per 512 px tile."""
    if detail == "low":
        return 85
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    tiles = math.ceil(math.floor(w) / 512) * math.ceil(math.floor(h) / 512)
    return 85 + 170 * tiles


ANTHROPIC_LONG_SIDE = 1568
ANTHROPIC_MAX_TOKENS = 1600  # images over ~1,600 tokens are scaled down first


def anthropic_image_tokens(width: int, height: int) -> int:
    """Anthropic's published rule: tokens = width * height / 750, after an image over 1568 px on
    its long side (or over ~1,600 tokens) has been scaled down, keeping its aspect ratio."""
    w, h = fit(width, height, ANTHROPIC_LONG_SIDE)
    if w * h / 750 > ANTHROPIC_MAX_TOKENS:
        s = math.sqrt(ANTHROPIC_MAX_TOKENS * 750 / (w * h))
        w, h = math.floor(w * s), math.floor(h * s)
    return math.ceil(w * h / 750)


def image_tokens(part: dict, family: str) -> int:
    if family == "anthropic":
        return anthropic_image_tokens(part["width"], part["height"])
    return openai_image_tokens(part["width"], part["height"], part.get("detail", "auto"))


__all__ = [
    "ImageSource",
    "ImageError",
    "with_images",
    "supports_images",
    "require_images",
    "openai_messages",
    "anthropic_content",
    "image_tokens",
    "openai_image_tokens",
    "anthropic_image_tokens",
    "default_max_side",
    "provider_family",
    "RULES",
]
