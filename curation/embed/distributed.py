"""Embedding under ``torchrun``: every rank embeds its shard of the missing items, rank 0 merges.

Only rank 0 opens the corpus database (DuckDB allows one writer); it lists the missing items
and broadcasts them. Work proceeds in rounds of ``world * chunk`` items; in each round rank r
takes items ``r, r + world, ...``, and the vectors are gathered to rank 0, which commits them.
Shard files are read directly by every rank, so across nodes the corpus must sit on a shared
filesystem. Any rank's error is gathered too, and every rank stops with that message.
"""

from __future__ import annotations

import os
import time

import numpy as np

from curation.embed.models import load_embedder
from curation.embed.pipeline import (
    EmbedStats,
    Undecodable,
    image_batches,
    missing_items,
    text_batches,
)
from schemas.errors import SyphusError
from schemas.progress import Progress, no_progress


def is_distributed() -> bool:
    """True when started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def embed_distributed(
    corpus_path: str,
    spec: str,
    kind: str,
    *,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "cpu",
    chunk: int = 1024,
    progress: Progress | None = None,
) -> EmbedStats:
    import torch.distributed as dist

    from curation.store import Corpus

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    t0 = time.perf_counter()
    corpus = None
    try:
        embedder = _collective(lambda: load_embedder(spec, device=device), dist)
        if kind not in embedder.modalities:
            raise SyphusError(f"model '{embedder.name}' does not embed {kind}s")

        def listing():
            nonlocal corpus
            corpus = Corpus(corpus_path, create=False)
            total, todo = missing_items(corpus, embedder.name, kind)
            if kind == "image" and total == 0:
                raise SyphusError(f"{corpus_path}: the corpus has no images to embed")
            return total, todo

        total, todo = _rank0_broadcast(listing if rank == 0 else None, dist)
        run_id = (
            corpus.start_run(f"embed {kind}", {"model": embedder.name, "kind": kind, "world_size": world})
            if rank == 0 and todo
            else None
        )
        step = world * chunk
        done = 0
        undecodable = Undecodable()
        advance = (progress if rank == 0 else None) or no_progress
        advance(0, total=len(todo), label=f"embed {kind}s ({embedder.name}, {world} ranks)")
        for start in range(0, len(todo), step):
            mine = todo[start : start + step][rank::world]

            def work(mine=mine):
                bad = Undecodable()
                if kind == "image":
                    batches = image_batches(
                        embedder, mine, batch_size=batch_size, workers=workers, undecodable=bad
                    )
                else:
                    batches = text_batches(
                        embedder, [k for k, _ in mine], [t for _, t in mine], batch_size=batch_size
                    )
                keys, vecs = [], []
                for k, v in batches:
                    keys.extend(k)
                    vecs.append(v)
                return keys, (np.concatenate(vecs) if vecs else None), bad.count, bad.example

            parts = _gather_results(work, dist)
            if rank == 0:
                for keys, vecs, n_bad, example in parts:
                    undecodable.count += n_bad
                    undecodable.example = undecodable.example or example
                    if keys:
                        corpus.store_vectors(embedder.name, kind, keys, vecs, run_id)
                        done += len(keys)
                        advance(len(keys))
        secs = time.perf_counter() - t0
        if run_id is not None:
            corpus.finish_run(
                run_id,
                summary={
                    "embedded": done,
                    "undecodable": undecodable.count,
                    "world_size": world,
                    "seconds": round(secs, 3),
                },
            )
        return EmbedStats(
            embedder.name, kind, total, total - len(todo), done, secs, undecodable.count, undecodable.example
        )
    finally:
        if corpus is not None:
            corpus.close()
        dist.barrier()
        dist.destroy_process_group()


def _collective(fn, dist):
    """Run fn on every rank; if any rank failed, every rank raises the first failure."""
    err, out = None, None
    try:
        out = fn()
    except SyphusError as e:
        err = str(e)
    errs: list = [None] * dist.get_world_size()
    dist.all_gather_object(errs, err)
    first = next((e for e in errs if e), None)
    if first:
        raise SyphusError(first)
    return out


def _rank0_broadcast(fn, dist):
    box = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except SyphusError as e:
            box[0] = ("error", str(e))
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise SyphusError(value)
    return value


def _gather_results(fn, dist):
    """Run fn on every rank and gather (keys, vectors) to rank 0; errors stop every rank."""
    try:
        res = ("ok", fn())
    except SyphusError as e:
        res = ("error", str(e))
    rank = dist.get_rank()
    got = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(res, got, dst=0)
    verdict = [None]
    if rank == 0:
        verdict[0] = next((r[1] for r in got if r[0] == "error"), "")
    dist.broadcast_object_list(verdict, src=0)
    if verdict[0]:
        raise SyphusError(verdict[0])
    return [r[1] for r in got] if rank == 0 else []
