"""In-context example assignment: for every instruction, its k most related instructions.

Policies score a pair of instructions by
  ``i2i``    the cosine of their image embeddings (several images or frames: the normalised mean),
  ``t2t``    the cosine of their instruction-text embeddings,
  ``mixed``  ``w * i2i + (1 - w) * t2t``, computed exactly with one index over the concatenation
             ``[sqrt(w) * image, sqrt(1 - w) * text]`` (an instruction without images has a zero
             image part, so only its text counts).
A candidate is excluded when it is the query itself, when it shares an image with the query,
or when its score reaches the near-duplicate threshold; ``same_task`` restricts candidates to
the query's task. Ties are broken by a seeded permutation, so a run is deterministic given its
seed. Results go to ``context_sets`` with a ``runs`` row holding the index report (recall@k),
all in one transaction: a failed run writes nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from curation.embed.models import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL
from curation.index import DEFAULT_FLAT_MAX, IndexReport, all_items_knn
from curation.queries import text_key
from schemas.errors import SyphusError
from schemas.progress import Progress, no_progress

POLICIES = ("i2i", "t2t", "mixed")


@dataclass
class ContextConfig:
    policy: str = "t2t"
    k: int = 4
    image_model: str = DEFAULT_IMAGE_MODEL
    text_model: str = DEFAULT_TEXT_MODEL
    image_weight: float = 0.5
    near_dup: float | None = 0.98
    exclude_same_image: bool = True
    same_task: bool = False
    seed: int = 0
    index: str = "auto"
    threads: int | None = None
    target_recall: float = 0.95
    recall_sample: int = 1000
    flat_max: int = DEFAULT_FLAT_MAX

    def validate(self) -> None:
        if self.policy not in POLICIES:
            raise SyphusError(f"unknown policy '{self.policy}' (use {', '.join(POLICIES)})")
        if self.k < 1:
            raise SyphusError(f"--k must be at least 1 (got {self.k})")
        if not 0.0 <= self.image_weight <= 1.0:
            raise SyphusError(f"--image-weight must be between 0 and 1 (got {self.image_weight})")


@dataclass
class ContextResult:
    run_id: str
    rows: int
    queries: int
    short_queries: int  # queries left with fewer than k related pairs after exclusions
    skipped_no_image: int
    reports: dict[str, IndexReport] = field(default_factory=dict)
    seconds: float = 0.0
    undecodable_images: int = 0  # image ids whose bytes do not decode: left out, counted
    undecodable_example: str | None = None


def model_key(spec: str) -> str:
    """The cache name an embedder spec resolves to, computed without loading the model."""
    from curation.embed.models import embedder_key

    return embedder_key(spec)


def ensure_embedded(
    corpus,
    spec: str,
    kind: str,
    *,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "cpu",
    progress: Progress | None = None,
) -> str:
    """Embed whatever the cache lacks for this model (loading the model only if needed)."""
    from curation.embed.models import load_embedder
    from curation.embed.pipeline import embed_corpus, missing_items

    total, todo = missing_items(corpus, model_key(spec), kind)
    if kind == "image" and total == 0:
        raise SyphusError(
            f"{corpus.path}: the corpus has no images, so policy i2i/mixed cannot run (use --policy t2t)"
        )
    if todo:
        emb = load_embedder(spec, device=device)
        embed_corpus(corpus, emb, kind, batch_size=batch_size, workers=workers, progress=progress)
        return emb.name
    return model_key(spec)


@dataclass
class _Items:
    ids: list[str]
    tasks: list[str]
    texts: list[str]
    images: list[tuple[str, ...]]


def _load_items(corpus) -> _Items:
    pairs = corpus.pairs(active_only=True)
    return _Items(
        [p.id for p in pairs],
        [p.task for p in pairs],
        [p.instruction for p in pairs],
        [tuple(p.image_ids) for p in pairs],
    )


def _text_matrix(corpus, model: str, texts: list[str]) -> np.ndarray:
    keys = [text_key(t) for t in texts]
    got, mat = corpus.load_vectors(model, "text", sorted(set(keys)))
    pos = {k: i for i, k in enumerate(got)}
    missing = next((t for t, k in zip(texts, keys, strict=True) if k not in pos), None)
    if missing is not None:
        raise SyphusError(
            f"no cached '{model}' text vector for instruction '{missing[:60]}'; run 'syphus embed' first"
        )
    return mat[[pos[k] for k in keys]]


def _image_matrix(
    corpus, model: str, images: list[tuple[str, ...]]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per instruction, the normalised mean of its images' vectors; a has-image mask; and the
    stored image ids left without a vector (their bytes did not decode when embedded)."""
    sha = corpus.image_sha256()
    got, mat = corpus.load_vectors(model, "image")
    if not got:
        raise SyphusError(f"no cached '{model}' image vectors; run 'syphus embed --kind image' first")
    pos = {k: i for i, k in enumerate(got)}
    out = np.zeros((len(images), mat.shape[1]), np.float32)
    has = np.zeros(len(images), bool)
    no_vector: set[str] = set()
    for j, ids in enumerate(images):
        rows = [pos[sha[i]] for i in ids if i in sha and sha[i] in pos]
        no_vector.update(i for i in ids if i in sha and sha[i] not in pos)
        if rows:
            v = mat[rows].mean(axis=0)
            out[j] = v / max(float(np.linalg.norm(v)), 1e-12)
            has[j] = True
    return out, has, sorted(no_vector)


def _select(
    cfg: ContextConfig,
    qi: int,
    cand: np.ndarray,
    scores: np.ndarray,
    images: list[tuple[str, ...]],
    tiebreak: np.ndarray,
) -> list[tuple[int, float]]:
    qimg = set(images[qi]) if cfg.exclude_same_image else set()
    keep: list[tuple[int, float]] = []
    for c, s in zip(cand.tolist(), scores.tolist(), strict=True):
        if c < 0 or c == qi:
            continue
        if cfg.near_dup is not None and s >= cfg.near_dup:
            continue
        if qimg and not qimg.isdisjoint(images[c]):
            continue
        keep.append((c, s))
    keep.sort(key=lambda cs: (-round(cs[1], 6), tiebreak[cs[0]]))
    return keep[: cfg.k]


def _assign_group(
    cfg: ContextConfig, x: np.ndarray, images: list[tuple[str, ...]], label: str, progress
) -> tuple[list[list[tuple[int, float]]], IndexReport]:
    import faiss

    n = len(x)
    if cfg.k > n - 1:
        raise SyphusError(f"--k {cfg.k} is larger than the {n - 1} candidates available{label}; lower --k")
    share: dict[str, int] = {}
    for ims in images:
        for i in set(ims):
            share[i] = share.get(i, 0) + 1
    # enough extra neighbours to survive the usual exclusions in one search
    same_image_max = (
        max((sum(share[i] for i in set(ims)) for ims in images), default=0) if cfg.exclude_same_image else 0
    )
    kk = min(n, cfg.k + 1 + min(same_image_max, 64) + 8)
    D, nbr, report = all_items_knn(
        x,
        kk,
        kind=cfg.index,
        threads=cfg.threads,
        seed=cfg.seed,
        target_recall=cfg.target_recall,
        recall_sample=cfg.recall_sample,
        flat_max=cfg.flat_max,
        progress=progress,
    )
    tiebreak = np.random.default_rng(cfg.seed).permutation(n)
    out = [_select(cfg, q, nbr[q], D[q], images, tiebreak) for q in range(n)]
    short = [q for q in range(n) if len(out[q]) < cfg.k]
    while short and kk < n:  # exact search with more neighbours for the few that ran short
        kk = min(n, kk * 4)
        sim_s, nbr_s = faiss.knn(x[short], x, kk, metric=faiss.METRIC_INNER_PRODUCT)
        for j, q in enumerate(short):
            out[q] = _select(cfg, q, nbr_s[j], sim_s[j], images, tiebreak)
        short = [q for q in short if len(out[q]) < cfg.k]
    return out, report


def assign_context_sets(
    corpus,
    cfg: ContextConfig,
    *,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "cpu",
    progress: Progress | None = None,
) -> ContextResult:
    """Embed what is missing, search, apply exclusions, and write one run of context sets."""
    cfg.validate()
    t0 = time.perf_counter()
    items = _load_items(corpus)
    if not items.ids:
        raise SyphusError(f"{corpus.path}: no (unflagged) instructions to retrieve for")
    parts: list[np.ndarray] = []
    has_image = np.ones(len(items.ids), bool)
    undecodable: list[str] = []
    if cfg.policy in ("i2i", "mixed"):
        if not any(items.images):
            raise SyphusError(
                f"{corpus.path}: no instruction has images, so policy {cfg.policy} cannot run (use --policy t2t)"
            )
        img_model = ensure_embedded(
            corpus,
            cfg.image_model,
            "image",
            batch_size=batch_size,
            workers=workers,
            device=device,
            progress=progress,
        )
        img, has_image, undecodable = _image_matrix(corpus, img_model, items.images)
        parts.append(img * (math.sqrt(cfg.image_weight) if cfg.policy == "mixed" else 1.0))
    if cfg.policy in ("t2t", "mixed"):
        txt_model = ensure_embedded(
            corpus, cfg.text_model, "text", batch_size=batch_size, device=device, progress=progress
        )
        parts.append(
            _text_matrix(corpus, txt_model, items.texts)
            * (math.sqrt(1 - cfg.image_weight) if cfg.policy == "mixed" else 1.0)
        )
    x = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    eligible = np.flatnonzero(has_image) if cfg.policy == "i2i" else np.arange(len(items.ids))
    skipped = len(items.ids) - len(eligible)
    groups: dict[str, np.ndarray] = {}
    if cfg.same_task:
        tasks = np.array(items.tasks, dtype=object)[eligible]
        for t in sorted(set(tasks.tolist())):
            groups[t] = eligible[tasks == t]
    else:
        groups["*"] = eligible
    rows: list[tuple[str, int, str, float]] = []
    reports: dict[str, IndexReport] = {}
    short = 0
    advance = progress or no_progress
    advance(0, total=len(eligible), label=f"retrieve {cfg.policy} (k={cfg.k})")
    for name, members in groups.items():
        label = f" in task '{name}'" if cfg.same_task else ""
        sel, rep = _assign_group(cfg, x[members], [items.images[m] for m in members], label, advance)
        reports[name] = rep
        for q, chosen in enumerate(sel):
            short += len(chosen) < cfg.k
            qid = items.ids[members[q]]
            for rank, (c, s) in enumerate(chosen):
                rows.append((qid, rank, items.ids[members[c]], float(s)))
    summary = {
        "queries": len(eligible),
        "rows": len(rows),
        "short_queries": short,
        "skipped_no_image": skipped,
        "undecodable_images": len(undecodable),
        "index": {k: v.as_dict() for k, v in reports.items()},
        "min_recall_at_k": min(
            (r.recall_at_k for r in reports.values() if r.recall_at_k is not None), default=None
        ),
    }
    with corpus.transaction():
        run_id = corpus.start_run(f"retrieve {cfg.policy}", asdict(cfg))
        corpus.add_context_sets(rows, cfg.policy, run_id)
        corpus.finish_run(run_id, summary=summary)
    return ContextResult(
        run_id,
        len(rows),
        len(eligible),
        short,
        skipped,
        reports,
        time.perf_counter() - t0,
        len(undecodable),
        undecodable[0] if undecodable else None,
    )
