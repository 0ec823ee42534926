"""``syphus export shards``: self-contained training shards for the trainer.

Each part holds a slice of the instructions with their in-context examples written out in
full, and a companion images file with every image the part needs, so a trainer reading one
part never looks anything up elsewhere. The format is documented in ``schemas/shards.py``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.jsonfiles import write_json_atomic
from curation.outputs import check_output_folder, refuse_corpus_overlap
from curation.store import Corpus, now
from schemas.errors import SyphusError
from schemas.progress import Progress
from schemas.shards import ShardFiles, ShardManifest
from schemas.tasks import media_of_task

CONTEXT_TYPE = pa.struct(
    [
        ("id", pa.string()),
        ("instruction", pa.string()),
        ("answer", pa.string()),
        ("image_ids", pa.list_(pa.string())),
    ]
)
INSTRUCTION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("lang", pa.string()),
        ("media", pa.string()),
        ("instruction", pa.string()),
        ("answer", pa.string()),
        ("image_ids", pa.list_(pa.string())),
        ("context", pa.list_(CONTEXT_TYPE)),
    ]
)
IMAGES_SCHEMA = pa.schema(
    [pa.field("image_id", pa.string(), nullable=False), pa.field("bytes", pa.binary(), nullable=False)]
)


@dataclass
class ShardExportReport:
    manifest: str
    rows: int
    parts: int
    images: int
    skipped_missing_images: int
    context_dropped: int = 0  # in-context ids left out: pair not in the corpus or images missing


_PART = re.compile(r"(part|images)-\d{5}\.parquet")


def shard_folder_files(folder: Path) -> set[str] | None:
    """The names ``export shards`` wrote in ``folder``, from its manifest; None if it has no
    valid manifest (then it is not a shard folder and must not be replaced)."""
    try:
        doc = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        manifest = ShardManifest.model_validate(doc)
    except (OSError, ValueError, UnicodeDecodeError):  # pydantic's ValidationError is a ValueError
        return None
    names = {"manifest.json"}
    for part in manifest.shards:
        names |= {part.instructions, part.images}
    return names


def _partial_files(folder: Path) -> set[str] | None:
    """A killed export's work folder holds only part and images files and the manifest."""
    names = {p.name for p in folder.iterdir()}
    ok = {n for n in names if _PART.fullmatch(n) or n in ("manifest.json", "manifest.json.partial")}
    return ok if ok == names else None


def _fetch(corpus: Corpus, ids: list[str]) -> dict[str, tuple[str, str, list[str]]]:
    return {p.id: (p.instruction, p.answer, p.image_ids) for p in corpus.pairs(ids)}


def export_shards(
    corpus: Corpus,
    out: Path,
    *,
    tasks: list[str] | None = None,
    langs: list[str] | None = None,
    rows_per_part: int = 2048,
    max_context: int = 8,
    progress: Progress | None = None,
) -> ShardExportReport:
    if rows_per_part < 1:
        raise SyphusError(f"--rows-per-part: must be at least 1 (got {rows_per_part})")
    if max_context < 0:
        raise SyphusError(f"--max-context: must be 0 or more (got {max_context})")
    out = Path(out)
    refuse_corpus_overlap(out, corpus.path, containing=True)
    check_output_folder(out, owned=shard_folder_files, what="shard folder")
    tmp = out.with_name(out.name + ".partial")
    check_output_folder(tmp, owned=_partial_files, what="partial shard folder", option="work folder")
    ids_rows = corpus.pair_keys(tasks=tasks, langs=langs)
    if not ids_rows:
        raise SyphusError(f"{corpus.path}: no instructions match (tasks={tasks}, langs={langs})")

    if tmp.exists():
        shutil.rmtree(tmp)  # a killed export's work folder (checked above)
    tmp.mkdir(parents=True)
    parts: list[ShardFiles] = []
    tasks_c: Counter[str] = Counter()
    langs_c: Counter[str] = Counter()
    total = skipped = n_images = context_dropped = 0
    for p, start in enumerate(range(0, len(ids_rows), rows_per_part)):
        chunk = ids_rows[start : start + rows_per_part]
        ids = [r[0] for r in chunk]
        base = _fetch(corpus, ids)
        ctx = corpus.context_map(ids)
        ctx_ids = sorted({c for q in ids for c in ctx.get(q, [])[:max_context]} - set(base))
        related = {**base, **_fetch(corpus, ctx_ids)}
        # which of this part's images exist: one query a part, not every id of the corpus in memory
        known_images = set(corpus.has_images(sorted({i for _, _, imgs in related.values() for i in imgs})))
        cols: dict[str, list] = {k: [] for k in INSTRUCTION_SCHEMA.names}
        need: set[str] = set()
        for ins_id, task, lang in chunk:
            instruction, answer, imgs = base[ins_id]
            if any(i not in known_images for i in imgs):
                skipped += 1
                continue
            context = []
            for cid in ctx.get(ins_id, [])[:max_context]:
                if cid in related and all(i in known_images for i in related[cid][2]):
                    ci, ca, cimgs = related[cid]
                    context.append({"id": cid, "instruction": ci, "answer": ca, "image_ids": cimgs})
                    need.update(cimgs)
                else:  # a pair not in the corpus (yet), or one whose images are missing
                    context_dropped += 1
            need.update(imgs)
            for k, v in (
                ("id", ins_id),
                ("task", task),
                ("lang", lang),
                ("media", media_of_task(task) if imgs else "none"),
                ("instruction", instruction),
                ("answer", answer),
                ("image_ids", imgs),
                ("context", context),
            ):
                cols[k].append(v)
            tasks_c[task] += 1
            langs_c[lang] += 1
        if not cols["id"]:
            continue
        ins_name, img_name = f"part-{p:05d}.parquet", f"images-{p:05d}.parquet"
        pq.write_table(pa.table(cols, schema=INSTRUCTION_SCHEMA), tmp / ins_name, compression="zstd")
        n_img = 0
        with pq.ParquetWriter(
            tmp / img_name,
            IMAGES_SCHEMA,
            compression={"image_id": "zstd", "bytes": "none"},
            use_dictionary=["image_id"],
            write_statistics=["image_id"],
        ) as w:
            buf_ids: list[str] = []
            buf: list[bytes] = []
            for iid, data in corpus.iter_images(sorted(need)):
                buf_ids.append(iid)
                buf.append(data)
                if len(buf) == 64:
                    w.write_table(pa.table({"image_id": buf_ids, "bytes": buf}, schema=IMAGES_SCHEMA))
                    n_img += len(buf)
                    buf_ids, buf = [], []
            if buf:
                w.write_table(pa.table({"image_id": buf_ids, "bytes": buf}, schema=IMAGES_SCHEMA))
                n_img += len(buf)
        parts.append(
            ShardFiles(instructions=ins_name, images=img_name, rows=len(cols["id"]), images_rows=n_img)
        )
        total += len(cols["id"])
        n_images += n_img
        if progress:
            progress(len(chunk), 0)
    manifest = ShardManifest(
        corpus=str(corpus.path.resolve()),
        created_at=now().replace(tzinfo=_dt.timezone.utc).isoformat(timespec="seconds"),
        rows=total,
        tasks=dict(tasks_c),
        langs=dict(langs_c),
        shards=parts,
    )
    write_json_atomic(tmp / "manifest.json", json.loads(manifest.model_dump_json()), indent=2)
    # Swap the finished directory in only when complete: a killed export never leaves a
    # manifest that points at missing parts.
    if out.exists():
        # a fresh name for the folder being replaced: an existing 'X.old' may be the user's
        old = out.with_name(f".{out.name}.replaced-{uuid.uuid4().hex[:8]}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    # a kill between the two renames or before the removal leaves a replaced export behind
    for stale in out.parent.glob(f".{out.name}.replaced-*"):
        ours = shard_folder_files(stale) if stale.is_dir() else None
        if ours is not None and {p.name for p in stale.iterdir()} <= ours:
            shutil.rmtree(stale)
    return ShardExportReport(
        str(out / "manifest.json"), total, len(parts), n_images, skipped, context_dropped
    )
