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
import json
import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from schemas.errors import SyphusError
from schemas.progress import Progress, no_progress

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


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) of a PNG or JPEG from its header alone, or None (then PIL decides).

    Planning reads every image of a run; parsing a few header bytes here instead of opening the
    image with PIL halves the time per image that fits as it is."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return ("PNG", w, h) if w and h else None
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            h, w = int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
            return ("JPEG", w, h) if w and h else None
        if marker == 0xDA:  # image data before any frame header: not a JPEG we can size here
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


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
        cache_bytes: int = 256 << 20,
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
        # sent sha -> where to read it again: (image id, shard, offset, nbytes) in the corpus, or
        # the caller's bytes (part_from_bytes); a re-read is then one pread, not a query
        self._origin: dict[str, tuple | bytes] = {}
        # sent sha -> (bytes to send, whether already base64): every provider form needs base64
        self._cache: OrderedDict[str, tuple[bytes, bool]] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self.workers = min(4, os.cpu_count() or 1)
        self._pool = None  # planning threads, started on first use
        self.encodes = 0  # downscale + encode operations (figures for tests and the benchmark)
        self.reads = 0  # image reads from the corpus

    # -- parts -----------------------------------------------------------------------------

    def part(self, image_id: str) -> dict:
        """The image part of a corpus image (the same dict for every request that uses it)."""
        p = self._parts.get(image_id)
        if p is not None:
            return p
        res = self.parts([image_id])[image_id]
        if isinstance(res, ImageError):
            raise res
        return res

    def parts(
        self, image_ids: Iterable[str], progress: Progress | None = None
    ) -> dict[str, dict | ImageError]:
        """Parts of many corpus images, read in shard order: id -> part, or the ImageError that
        makes it unusable. For planning a run: nothing is raised, every image is accounted for."""
        ids = list(dict.fromkeys(image_ids))
        wanted = [i for i in ids if i not in self._parts]
        out: dict[str, dict | ImageError] = {}
        if wanted and self.corpus is None:
            raise SyphusError("images were asked for but there is no corpus to read them from")
        progress = progress or no_progress
        if wanted:
            progress(0, total=len(wanted), label="check images")
        for start in range(0, len(wanted), 10_000):
            chunk = wanted[start : start + 10_000]
            index = self.corpus.image_index(chunk)
            for iid in chunk:
                if iid not in index:
                    out[iid] = ImageError(
                        f"image '{iid}': not in the corpus", reason="image not in the corpus"
                    )
                    progress(1)
            batch: list[tuple[str, bytes, tuple]] = []
            for iid in sorted((i for i in chunk if i in index), key=lambda i: index[i][1:3]):  # shard order
                sha, shard, offset, nbytes = index[iid]
                try:
                    data = self.corpus.read_image_at(shard, offset, nbytes, iid)
                except SyphusError as e:  # a truncated or unreadable shard
                    out[iid] = ImageError(
                        f"image '{iid}': {_one_line(e)}", reason="image unreadable in the corpus"
                    )
                    progress(1)
                    continue
                self.reads += 1
                batch.append((iid, data, index[iid]))
                if len(batch) >= 64:  # a bounded window of images in memory
                    self._prepare_many(batch, out)
                    progress(len(batch), sum(len(b[1]) for b in batch))
                    batch = []
            self._prepare_many(batch, out)
            progress(len(batch), sum(len(b[1]) for b in batch))
        return {i: out.get(i) or self._parts[i] for i in ids}

    def _prepare_many(self, batch: list[tuple[str, bytes, tuple]], out: dict) -> None:
        """Check (and downscale) a batch of images on a few threads: hashing, decoding and
        resizing release the GIL, so planning a large run uses the machine's cores."""

        def one(item: tuple[str, bytes, tuple]) -> tuple[str, dict | ImageError]:
            iid, data, (sha, shard, offset, nbytes) = item
            try:
                return iid, self._prepare(data, f"image '{iid}'", sha, (iid, shard, offset, nbytes))
            except ImageError as e:
                return iid, e

        if self._pool is None and len(batch) > 1 and self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="syphus-images")
        results = self._pool.map(one, batch) if self._pool is not None else map(one, batch)
        for iid, res in results:
            if isinstance(res, ImageError):
                out[iid] = res
            else:
                self._remember(iid, res)

    def close(self) -> None:
        """Stop the planning threads (the cache stays usable)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

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

    def _prepare(self, data: bytes, where: str, recorded_sha: str | None, origin: tuple | bytes) -> dict:
        data_sha = hashlib.sha256(data).hexdigest()
        if recorded_sha is not None and data_sha != recorded_sha:
            raise ImageError(
                f"{where}: its bytes in the corpus no longer match the sha256 recorded at import",
                reason="image corrupt in the corpus",
            )
        sent, width, height, media_type = self._encode(data, where)
        sha = data_sha if sent is data else hashlib.sha256(sent).hexdigest()
        with self._lock:
            self._origin.setdefault(sha, origin)
            self._put(sha, sent)
        return {"type": "image", "sha256": sha, "media_type": media_type, "width": width,
                "height": height, "detail": self.detail}  # fmt: skip

    def _encode(self, data: bytes, where: str) -> tuple[bytes, int, int, str]:
        """(bytes to send, width, height, media type): the stored bytes when they fit and are a
        format every provider takes, else a downscaled JPEG (PNG where there is transparency)."""
        head = header_size(data)
        if head is not None and max(head[1], head[2]) <= self.max_side:
            return data, head[1], head[2], MEDIA_TYPES[head[0]]
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
        with self._lock:
            self.encodes += 1
        return buf.getvalue(), tw, th, "image/png" if alpha else "image/jpeg"

    # -- bytes -------------------------------------------------------------------------------

    def _put(self, sha: str, data: bytes, *, b64: bool = False) -> None:
        """Cache the bytes to send (raw when planned, base64 once sent: the plan stays cheap and
        the base64 is made once, when first needed)."""
        old = self._cache.pop(sha, None)
        if old is not None:
            self._cached_bytes -= len(old[0])
            if old[1] and not b64:
                data, b64 = old
        self._cache[sha] = (data, b64)
        self._cached_bytes += len(data)
        while self._cache and (len(self._cache) > self.cache_items or self._cached_bytes > self.cache_bytes):
            _, (gone, _) = self._cache.popitem(last=False)
            self._cached_bytes -= len(gone)

    def payload(self, sha256: str) -> bytes:
        """The bytes to send for a part: from the cache, else read (and re-encoded) again."""
        with self._lock:
            hit = self._cache.get(sha256)
        if hit is not None:
            return base64.b64decode(hit[0]) if hit[1] else hit[0]
        return base64.b64decode(self.b64_bytes(sha256))

    def b64_bytes(self, sha256: str) -> bytes:
        """Base64 of the bytes to send, as ASCII bytes: cached, so a retry costs nothing."""
        with self._lock:
            hit = self._cache.get(sha256)
            if hit is not None:
                self._cache.move_to_end(sha256)
                if hit[1]:
                    return hit[0]
                raw = hit[0]
            else:
                raw = None
            origin = self._origin.get(sha256)
        if raw is None:
            raw = self._reread(sha256, origin)
        data = base64.b64encode(raw)
        with self._lock:
            self._put(sha256, data, b64=True)
        return data

    def _reread(self, sha256: str, origin: tuple | bytes | None) -> bytes:
        """The bytes to send for a part that left the cache: read (and downscaled) again."""
        if origin is None:
            raise SyphusError(f"image sha256 {sha256[:12]}...: not prepared by this ImageSource")
        if isinstance(origin, tuple):
            iid, shard, offset, nbytes = origin
            try:
                raw = self.corpus.read_image_at(shard, offset, nbytes, iid)
            except SyphusError as e:
                raise ImageError(
                    f"image '{iid}': {_one_line(e)}", reason="image unreadable in the corpus"
                ) from e
            self.reads += 1
            where = f"image '{iid}'"
        else:
            raw, where = origin, "image bytes"
        sent = self._encode(raw, where)[0]
        if hashlib.sha256(sent).hexdigest() != sha256:
            raise ImageError(
                f"{where}: changed since the run was planned", reason="image changed during the run"
            )
        return sent

    def b64(self, sha256: str) -> str:
        """Base64 of the bytes to send, as text."""
        return self.b64_bytes(sha256).decode("ascii")

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


_SLOT = "\x00syphus-image-{}\x00"  # JSON writes the NULs as \u0000: no text can be mistaken for it
_SLOT_RE = re.compile(rb"\\u0000syphus-image-(\d+)\\u0000")


def openai_body(body: dict[str, Any], source: ImageSource | None) -> bytes:
    """The JSON bytes of an OpenAI chat body whose messages may carry image parts.

    Each image's base64 is spliced into the serialized JSON instead of going through the JSON
    encoder: scanning ~130 kB of base64 per request was most of the client's CPU per image."""
    messages = body["messages"]
    if not has_images(messages):
        return json.dumps(body, ensure_ascii=False).encode("utf-8")
    parts: list[dict] = []

    def slot(b: dict) -> str:
        parts.append(b)
        return _SLOT.format(len(parts) - 1)

    raw = json.dumps({**body, "messages": _openai_form(messages, slot)}, ensure_ascii=False).encode("utf-8")
    src = _need(source)

    def url(match: re.Match) -> bytes:
        p = parts[int(match.group(1))]
        return b"data:" + p["media_type"].encode() + b";base64," + src.b64_bytes(p["sha256"])

    return _SLOT_RE.sub(url, raw)


def openai_messages(messages: list[dict], source: ImageSource | None) -> list[dict]:
    """The messages in OpenAI's chat form (also vLLM, SGLang and litellm's input): image parts
    become ``image_url`` data URLs with ``detail``. Text-only messages are returned as they are."""
    if not has_images(messages):
        return messages
    return _openai_form(messages, lambda b: _need(source).data_url(b))


def _openai_form(messages: list[dict], url_of: Callable[[dict], str]) -> list[dict]:
    """``messages`` with each image part replaced by an ``image_url`` block whose URL is ``url_of(part)``."""
    out = []
    for m in messages:
        content = m.get("content")
        if type(content) is not list:
            out.append(m)
            continue
        blocks = []
        for b in content:
            if b.get("type") == "image":
                blocks.append(
                    {"type": "image_url", "image_url": {"url": url_of(b), "detail": b.get("detail", "auto")}}
                )
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
