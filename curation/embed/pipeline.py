"""Embedding the corpus: read bytes from the store, decode in worker processes, encode in batches.

The model runs in the main process; ``DataLoader`` workers each pread their images straight
from the shard files and decode + preprocess them, so the model does not wait on JPEG decoding.
Vectors are committed to the cache every few batches: a killed run keeps what it finished and
a rerun embeds only what is missing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from curation.embed.models import DecodeAndTransform, Embedder
from curation.queries import ImageItem
from curation.store import open_shard
from schemas.errors import SyphusError
from schemas.progress import Progress, no_progress


class ImageBytesDataset:
    """Map-style dataset over image items; each process opens its own shard descriptors."""

    def __init__(self, items: Sequence[ImageItem], decoder: DecodeAndTransform):
        self.items = list(items)
        self.decoder = decoder
        self._fds: dict[str, int] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.items)

    def _fd(self, path: str) -> int:
        if self._pid != os.getpid():  # a forked worker must not share the parent's table
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = open_shard(path)
        return fd

    def __getitem__(self, i: int):
        """(index, tensor, None) or (index, None, (kind, message)): a worker never raises, because
        the DataLoader would turn a one-line error into a wrapped traceback."""
        it = self.items[i]
        try:
            data = os.pread(self._fd(it.path), it.nbytes, it.offset)
            if len(data) != it.nbytes:
                raise SyphusError(f"{it.path}: truncated shard (image '{it.image_id}')")
        except (SyphusError, OSError) as e:
            return i, None, ("unreadable", str(e))
        try:
            return i, self.decoder(data, f"image '{it.image_id}'"), None
        except SyphusError as e:
            return i, None, ("undecodable", str(e))


def _collate(batch):
    import torch

    good = [b for b in batch if b[2] is None]
    x = torch.stack([b[1] for b in good]) if good else None
    return [b[0] for b in good], x, [(b[0], *b[2]) for b in batch if b[2] is not None]


@dataclass
class Undecodable:
    """Images whose stored bytes no longer decode: left out of the embedding and counted."""

    count: int = 0
    example: str | None = None

    def add(self, message: str) -> None:
        self.count += 1
        self.example = self.example or message


def image_batches(
    embedder: Embedder,
    items: Sequence[ImageItem],
    *,
    batch_size: int = 64,
    workers: int = 2,
    undecodable: Undecodable | None = None,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield (keys, vectors) batch by batch, in item order. An image that does not decode is
    skipped and counted in ``undecodable``; a missing or short shard stops with a one-line error."""
    if not items:
        return
    from torch.utils.data import DataLoader

    _check_shards(items)
    ds = ImageBytesDataset(items, embedder.image_decoder())
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
    )
    for idx, x, failed in loader:
        for _i, kind, message in failed:
            if kind == "unreadable":
                raise SyphusError(message)
            if undecodable is not None:
                undecodable.add(message)
        if idx:
            yield [items[i].key for i in idx], embedder.encode_images(x)


def _check_shards(items: Sequence[ImageItem]) -> None:
    """Every shard the items live in exists and is long enough, before any worker starts."""
    need: dict[str, tuple[int, str]] = {}
    for it in items:
        end = it.offset + it.nbytes
        if end > need.get(it.path, (0, ""))[0]:
            need[it.path] = (end, it.image_id)
    for path, (end, image_id) in need.items():
        os.close(open_shard(path))
        if os.path.getsize(path) < end:
            raise SyphusError(f"{path}: truncated shard (image '{image_id}'); the corpus is damaged")


def text_batches(
    embedder: Embedder, keys: Sequence[str], texts: Sequence[str], *, batch_size: int = 64
) -> Iterator[tuple[list[str], np.ndarray]]:
    for s in range(0, len(keys), batch_size):
        yield (
            list(keys[s : s + batch_size]),
            embedder.encode_texts(texts[s : s + batch_size], batch_size=batch_size),
        )


@dataclass
class EmbedStats:
    model: str
    kind: str
    total: int
    cached: int
    embedded: int
    seconds: float
    undecodable: int = 0
    undecodable_example: str | None = None

    @property
    def per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def missing_items(corpus, model: str, kind: str):
    """(all count, missing items) for one model; image items or (key, text) pairs."""
    have = corpus.cached_keys(model, kind)
    if kind == "image":
        items = corpus.image_items()
        return len(items), [it for it in items if it.key not in have]
    if kind == "text":
        texts = corpus.text_items()
        return len(texts), [(k, t) for k, t in texts.items() if k not in have]
    raise SyphusError(f"unknown embedding kind '{kind}' (use image or text)")


def embed_corpus(
    corpus,
    embedder: Embedder,
    kind: str,
    *,
    batch_size: int = 64,
    workers: int = 2,
    commit_every: int = 2048,
    progress: Progress | None = None,
) -> EmbedStats:
    """Embed every image (or distinct instruction text) of the corpus not yet cached for this model."""
    if kind not in embedder.modalities:
        raise SyphusError(
            f"model '{embedder.name}' does not embed {kind}s (it embeds {', '.join(sorted(embedder.modalities))})"
        )
    total, todo = missing_items(corpus, embedder.name, kind)
    if kind == "image" and total == 0:
        raise SyphusError(f"{corpus.path}: the corpus has no images to embed")
    t0 = time.perf_counter()
    done = 0
    bad = Undecodable()
    if todo:
        run_id = corpus.start_run(
            f"embed {kind}", {"model": embedder.name, "kind": kind, "batch_size": batch_size}
        )
        if kind == "image":
            batches = image_batches(embedder, todo, batch_size=batch_size, workers=workers, undecodable=bad)
        else:
            batches = text_batches(
                embedder, [k for k, _ in todo], [t for _, t in todo], batch_size=batch_size
            )
        pend_keys: list[str] = []
        pend_vecs: list[np.ndarray] = []

        def commit() -> None:
            if pend_keys:
                corpus.store_vectors(embedder.name, kind, pend_keys, np.concatenate(pend_vecs), run_id)
                pend_keys.clear()
                pend_vecs.clear()

        advance = progress or no_progress
        advance(0, total=len(todo), label=f"embed {kind}s ({embedder.name})")
        for keys, vecs in batches:
            pend_keys.extend(keys)
            pend_vecs.append(vecs)
            done += len(keys)
            advance(len(keys))
            if len(pend_keys) >= commit_every:
                commit()
        commit()
        secs = time.perf_counter() - t0
        corpus.finish_run(
            run_id,
            summary={
                "embedded": done,
                "cached": total - len(todo),
                "undecodable": bad.count,
                "seconds": round(secs, 3),
            },
        )
    return EmbedStats(
        embedder.name, kind, total, total - len(todo), done, time.perf_counter() - t0, bad.count, bad.example
    )
