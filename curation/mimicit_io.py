"""Import and export of the original MIMIC-IT files.

Import reads ``*_instructions.json``, ``*_train.json`` and the images (a parquet keyed by id
with a ``base64`` column, or the older ``{id: base64}`` JSON), streaming the images in row
batches. Export writes the same three kinds of file, so that the original Otter code reads
our output and import -> export -> import gives the same records and byte-identical images.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.formats import images_parquet_columns, read_context_map, read_instructions
from curation.images import (
    DEFAULT_MAX_PIXELS,
    decode_base64,
    inspect_image,
    parquet_leaf_index,
    refuse_inflating_column,
)
from curation.jsonfiles import write_json_atomic
from curation.outputs import refuse_corpus_overlap, safe_child
from curation.store import Corpus, InstructionRow, check_name, now
from schemas.errors import SyphusError
from schemas.mimicit import task_of_id
from schemas.progress import Progress

# Context-set methods used for what the MIMIC-IT files carry.
METHOD_REL = "rel_ins_ids"
METHOD_CONTEXT_MAP = "train_config"  # the value stored corpora hold


@dataclass
class ImportReport:
    run_id: str
    instructions_added: int = 0
    instructions_existing: int = 0
    images_added: int = 0
    images_existing: int = 0
    images_deduplicated: int = 0
    image_bytes: int = 0
    context_rows: int = 0
    context_unresolved: int = 0  # in-context ids naming no pair of the file or corpus (kept)
    context_unresolved_example: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    skip_examples: dict[str, str] = field(default_factory=dict)  # per reason, the first message

    def skip(self, reason: str, example: str | None = None) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if example:
            self.skip_examples.setdefault(reason, example)


# -- reading ---------------------------------------------------------------------------------


def iter_parquet_images(
    path: Path, *, batch_rows: int | None = None, batch_bytes: int = 64 << 20
) -> Iterator[tuple[str, str | bytes, str]]:
    """Yield (id, base64 text, where) in row batches: memory stays at one batch, whatever the
    file or column size. Without ``batch_rows`` a batch holds about ``batch_bytes`` of base64,
    from the column's size in the file metadata (256 rows of 100 KB images, 20 of 3 MB ones)."""
    try:
        # a buffered stream without pre-buffering: pages are read as batches need them, never a
        # whole column chunk (one row group of a big MIMIC-IT parquet can hold gigabytes)
        pf = pq.ParquetFile(path, memory_map=False, buffer_size=1 << 20, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as e:
        raise SyphusError(f"{path}: not a readable parquet file ({e})") from e
    id_col, b64_col = images_parquet_columns(pf.schema_arrow, path)
    refuse_inflating_column(pf, b64_col, path)
    if batch_rows is None:
        batch_rows = _rows_per_batch(pf, b64_col, batch_bytes)
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=[id_col, b64_col], use_threads=False):
        ids = batch.column(0).to_pylist()
        b64s = batch.column(1).to_pylist()
        for iid, v in zip(ids, b64s, strict=True):
            where = f"{path}: row {row}"
            if iid is None:
                raise SyphusError(f"{where}: image id is null")
            if v is None:
                raise SyphusError(f"{where} (id '{iid}'): base64 is null")
            yield str(iid), v, f"{path}: image '{iid}'"
            row += 1


def _rows_per_batch(pf: pq.ParquetFile, column: str, batch_bytes: int) -> int:
    md = pf.metadata
    if md.num_rows == 0:
        return 256
    leaf = parquet_leaf_index(pf, column)
    size = sum(md.row_group(g).column(leaf).total_uncompressed_size for g in range(md.num_row_groups))
    return int(min(256, max(1, batch_bytes // max(1, size // md.num_rows))))


def iter_json_images(path: Path) -> Iterator[tuple[str, str, str]]:
    """Stream the older ``{id: base64}`` images JSON without loading it whole."""
    import ijson

    size = path.stat().st_size
    if size == 0:
        raise SyphusError(f"{path}: empty file (expected an images JSON object)")
    with open(path, "rb") as f:
        head = f.read(4096).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
        if head and head[:1] != b"{":
            raise SyphusError(f"{path}: expected a JSON object mapping image ids to base64 (an images JSON)")
        f.seek(0)
        n, last = 0, None
        try:
            for iid, v in ijson.kvitems(f, ""):
                if not isinstance(v, str):
                    raise SyphusError(f"{path}: image '{iid}': expected a base64 string")
                yield iid, v, f"{path}: image '{iid}'"
                n, last = n + 1, iid
        except ijson.JSONError as e:
            after = _after_text(n, last)
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "premature EOF" in first:
                raise SyphusError(
                    f"{path}: truncated images JSON: the file ends at byte {size} {after}; "
                    "copy the whole file again"
                ) from e
            raise SyphusError(f"{path}: malformed images JSON near byte {f.tell()} {after}: {first}") from e
        except UnicodeDecodeError as e:
            raise SyphusError(f"{path}: not UTF-8 text {_after_text(n, last)} ({e.reason})") from e


def _after_text(n: int, last: str | None) -> str:
    return f"after image {n} ('{last}')" if last is not None else "before the first image"


def iter_image_file(path: Path) -> Iterator[tuple[str, str | bytes, str]]:
    if not path.is_file():
        raise SyphusError(f"{path}: images file not found")
    if path.suffix.lower() == ".json":
        return iter_json_images(path)
    if path.stat().st_size == 0:
        raise SyphusError(f"{path}: empty file (expected an images parquet)")
    return iter_parquet_images(path)


# -- import ----------------------------------------------------------------------------------


def import_mimicit(
    corpus: Corpus,
    instructions: Path,
    *,
    images: list[Path] = (),
    train: Path | None = None,
    task: str | None = None,
    skip_bad: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    rows_per_shard: int = 4096,
    progress: Progress | None = None,
) -> ImportReport:
    """Import one MIMIC-IT instructions file (+ images, + its ``*_train.json`` context map) into the corpus.

    All of the input is validated as it is read; on an error nothing of this command stays in
    the corpus (unless ``skip_bad``, which quarantines the bad record and goes on). Images are
    committed shard by shard, so a killed import keeps its progress and a rerun skips them.
    """
    meta, records = read_instructions(instructions)
    if not records:
        raise SyphusError(f"{instructions}: field 'data' is empty: no instructions to import")
    context_map = read_context_map(train) if train else None
    for k, v in (context_map or {}).items():
        for x in (k, *v):  # an id no instructions file may hold can never resolve
            check_name(x, what=f"{train}: entry {k[:80]!r}: instruction id")
    if task is not None:
        check_name(task, what="--task")

    run_id = corpus.start_run(
        "import mimicit",
        {
            "instructions": str(instructions),
            "images": [str(p) for p in images],
            "train": str(train) if train else None,
            "task": task,
            "meta": meta,
        },
    )
    report = ImportReport(run_id)
    try:
        _import_images(
            corpus,
            images,
            run_id,
            report,
            skip_bad=skip_bad,
            max_pixels=max_pixels,
            rows_per_shard=rows_per_shard,
            progress=progress,
        )
        _import_records(
            corpus,
            instructions,
            records,
            context_map,
            task,
            run_id,
            report,
            skip_bad=skip_bad,
            context_map_path=train,
        )
        corpus.finish_run(run_id, "done", report.__dict__)
    except SyphusError:
        corpus.rollback_run(run_id)
        raise
    return report


def _task_of(ins_id: str, path: Path) -> str:
    """A record's task: the text before ``_INS_`` in its id (so a merged export re-imports
    with each pair's own task), else the file name without ``_instructions.json``."""
    t = task_of_id(ins_id)
    if t:
        return t
    stem = path.name
    for suffix in (".json", "_instructions"):
        stem = stem.removesuffix(suffix)
    return stem or "UNKNOWN"


def _import_images(corpus, paths, run_id, report, *, skip_bad, max_pixels, rows_per_shard, progress) -> None:
    if not paths:
        return
    with corpus.image_writer(run_id, max_pixels=max_pixels, rows_per_shard=rows_per_shard) as w:
        for path in paths:
            batch: list[tuple[str, bytes, str]] = []
            for iid, b64, where in iter_image_file(Path(path)):
                try:
                    batch.append((iid, decode_base64(b64, where=where), where))
                except SyphusError as e:
                    if not skip_bad:
                        raise
                    corpus.quarantine("import", str(e), source=str(path), record_id=iid, run_id=run_id)
                    report.skip("bad image", str(e))
                if len(batch) >= 256:
                    _add_images(corpus, w, batch, path, run_id, report, skip_bad, progress)
                    batch = []
            _add_images(corpus, w, batch, path, run_id, report, skip_bad, progress)


def _add_images(corpus, writer, batch, path, run_id, report, skip_bad, progress) -> None:
    if not batch:
        return
    good, infos = [], []
    for iid, data, where in batch:
        try:
            infos.append(inspect_image(data, where=where, max_pixels=writer.max_pixels))
            good.append((iid, data, where))
        except SyphusError as e:
            if not skip_bad:
                raise SyphusError(
                    f"{e} (pass --skip-bad to skip such images: counted and quarantined)"
                ) from e
            corpus.quarantine("import", str(e), source=str(path), record_id=iid, run_id=run_id)
            report.skip("bad image", str(e))
    for (_iid, data, _w), status in zip(good, writer.add_batch(good, infos), strict=True):
        if status == "existing":
            report.images_existing += 1
        else:
            report.images_added += 1
            report.image_bytes += len(data)
            report.images_deduplicated += status == "dedup"
        if progress:
            progress(1, len(data))


def _import_records(
    corpus, path, records, context_map, task, run_id, report, *, skip_bad, context_map_path=None
) -> None:
    def bad(msg: str, reason: str, ins_id: str | None, raw: str | None = None, source: Path = path) -> None:
        if not skip_bad:
            raise SyphusError(msg)
        corpus.quarantine("import", msg, source=str(source), record_id=ins_id, run_id=run_id, raw=raw)
        report.skip(reason, msg)

    ids = list(records)
    existing = {p.id: (p.instruction, p.answer, p.image_ids) for p in corpus.pairs(ids)}
    referenced = sorted({i for r in records.values() for i in r.image_ids})
    known_images = set(corpus.has_images(referenced))
    rows: list[InstructionRow] = []
    keep: set[str] = set()
    for ins_id, rec in records.items():
        rec_task = task or _task_of(ins_id, path)
        try:
            check_name(ins_id, what=f"{path}: instruction id")
            check_name(rec_task, what=f"{path}: record '{ins_id}': task")
            for r in rec.rel_ins_ids:  # an id no file may hold can never resolve
                check_name(r, what=f"{path}: record '{ins_id}': rel_ins_ids entry")
        except SyphusError as e:
            bad(str(e), "invalid id or task", ins_id, rec.model_dump_json())
            continue
        prev = existing.get(ins_id)
        if prev is not None:
            if (prev[0], prev[1], list(prev[2] or [])) != (rec.instruction, rec.answer, rec.image_ids):
                msg = f"{path}: record '{ins_id}': id is already in the corpus with different content"
                bad(msg, "conflicting id", ins_id, rec.model_dump_json())
                continue
            report.instructions_existing += 1
            continue
        missing = [i for i in rec.image_ids if i not in known_images]
        if missing:
            msg = f"{path}: record '{ins_id}': field 'image_ids' names unknown image id '{missing[0]}'"
            bad(
                msg if skip_bad else msg + " (import its images with --images, or pass --skip-bad)",
                "unknown image id",
                ins_id,
                rec.model_dump_json(),
            )
            continue
        extra = {k: v for k, v in (rec.model_extra or {}).items()}
        lang = extra.pop("lang", "en") if isinstance(extra.get("lang", "en"), str) else "en"
        rows.append(
            InstructionRow(
                id=ins_id,
                task=rec_task,
                instruction=rec.instruction,
                answer=rec.answer,
                image_ids=list(rec.image_ids),
                lang=lang,
                source_id=None,
                extra=extra or None,
            )
        )
        keep.add(ins_id)
    # In-context ids that name no pair of this file or of the corpus are kept (they resolve once
    # the file holding them is imported, in any order) and counted, so none goes unnoticed;
    # exports leave out the ones still unresolved, and count them there too.
    present = keep | (set(existing) & set(records))
    outside = sorted(
        {r for q in keep for r in records[q].rel_ins_ids}
        | {r for q, v in (context_map or {}).items() if q in keep for r in v}
    )
    outside = [r for r in outside if r not in present]
    if outside:
        present |= corpus.existing_instructions(outside)

    def links(q: str, related: list[str]) -> list[tuple[str, int, str, None]]:
        for r in related:
            if r not in present:
                report.context_unresolved += 1
                report.context_unresolved_example = report.context_unresolved_example or r
        return [(q, k, r, None) for k, r in enumerate(related)]

    ctx_rel = [link for q in keep for link in links(q, records[q].rel_ins_ids)]
    ctx_mapped: list[tuple[str, int, str, None]] = []
    if context_map:
        unknown = [q for q in context_map if q not in records]
        if len(unknown) == len(context_map):
            raise SyphusError(
                f"{context_map_path}: none of its {len(context_map)} entries names an instruction of {path.name} "
                f"(e.g. '{unknown[0]}'); pass the *_train.json that belongs to this file"
            )
        for q in unknown:  # a context-map entry needs its pair: nothing to attach it to, so it is dropped
            msg = f"{context_map_path}: entry '{q}' names no instruction of {path.name}"
            corpus.quarantine("import", msg, source=str(context_map_path), record_id=q, run_id=run_id)
            report.skip("train entry without its pair", msg)
        for q, rel in context_map.items():
            if q in keep:
                ctx_mapped += links(q, rel)
    with corpus.transaction():
        report.instructions_added = corpus.add_instructions(rows, run_id)
        report.context_rows = corpus.add_context_sets(ctx_rel, METHOD_REL, run_id)
        report.context_rows += corpus.add_context_sets(ctx_mapped, METHOD_CONTEXT_MAP, run_id)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def iter_image_paths(spec: str) -> list[Path]:
    """A directory (walked recursively) or a glob pattern, sorted for determinism."""
    import glob

    p = Path(spec)
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        files = [Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file()]
    if not files:
        raise SyphusError(f"{spec}: no image files found")
    return sorted(files)


def _is_utf8(text: str) -> bool:
    """False for names the OS gave as undecodable bytes (Python keeps them as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(path: str | Path) -> str:
    """A path as text that any terminal and DuckDB accept (undecodable bytes as \\xNN)."""
    return os.fsencode(str(path)).decode("utf-8", errors="backslashreplace")


def image_id_for(path: Path, root: Path | None, pattern: str) -> str:
    rel = path.relative_to(root) if root and path.is_relative_to(root) else path
    try:
        return pattern.format(
            stem=path.stem, name=path.name, parent=path.parent.name, relpath=rel.with_suffix("").as_posix()
        )
    except (KeyError, IndexError) as e:
        raise SyphusError(
            f"--id-pattern '{pattern}': unknown field {e} (use {{stem}}, {{name}}, {{parent}}, {{relpath}})"
        ) from e


def import_image_files(
    corpus: Corpus,
    spec: str,
    *,
    id_pattern: str = "{stem}",
    skip_bad: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    rows_per_shard: int = 4096,
    progress: Progress | None = None,
    files: list[Path] | None = None,
) -> ImportReport:
    """Ingest the files ``spec`` names (or ``files``, already listed from it by the caller)."""
    files = iter_image_paths(spec) if files is None else files
    root = Path(spec) if Path(spec).is_dir() else None
    ids: dict[str, Path] = {}
    bad_names: list[Path] = []
    for f in files:
        if not _is_utf8(str(f)):
            if not skip_bad:
                raise SyphusError(
                    f"{printable(f)}: file name is not valid UTF-8; rename it (e.g. with convmv), "
                    "or pass --skip-bad to skip such files (counted)"
                )
            bad_names.append(f)
            continue
        iid = image_id_for(f, root, id_pattern)
        if iid in ids:
            raise SyphusError(
                f"{f}: image id '{iid}' also given by {ids[iid]} (use --id-pattern '{{relpath}}')"
            )
        ids[iid] = f
    run_id = corpus.start_run("import images", {"spec": printable(spec), "id_pattern": id_pattern})
    report = ImportReport(run_id)
    try:
        for f in bad_names:
            msg = f"{printable(f)}: file name is not valid UTF-8"
            corpus.quarantine(
                "import", msg, source=printable(spec), record_id=printable(f.name), run_id=run_id
            )
            report.skip("file name not UTF-8", msg)
        with corpus.image_writer(
            run_id, max_pixels=max_pixels, source=printable(spec), rows_per_shard=rows_per_shard
        ) as w:
            batch: list[tuple[str, bytes, str]] = []
            for iid, f in ids.items():
                batch.append((iid, f.read_bytes(), str(f)))
                if len(batch) >= 256:
                    _add_images(corpus, w, batch, spec, run_id, report, skip_bad, progress)
                    batch = []
            _add_images(corpus, w, batch, spec, run_id, report, skip_bad, progress)
        corpus.finish_run(run_id, "done", report.__dict__)
    except SyphusError:
        corpus.rollback_run(run_id)
        raise
    return report


# -- export ----------------------------------------------------------------------------------


@dataclass
class ExportReport:
    files: list[str] = field(default_factory=list)
    instructions: int = 0
    images: int = 0
    image_bytes: int = 0
    dropped_cross_file: int = 0  # context ids naming a pair exported to another file
    dropped_not_exported: int = 0  # context ids naming a pair not exported (flagged) or unknown
    skipped_missing_images: int = 0  # pairs left out because the corpus lacks one of their images


def pandas_images_schema() -> pa.Schema:
    """The schema pandas writes for a DataFrame indexed by image id with a base64 column, so
    ``pd.read_parquet(path).loc[image_id]['base64']`` works as in the original Otter code."""
    meta = {
        "index_columns": ["id"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "base64",
                "field_name": "base64",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
            {
                "name": "id",
                "field_name": "id",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "syphus", "version": "0.1.0"},
        "pandas_version": "2.0.0",
    }
    return pa.schema(
        [("base64", pa.string()), ("id", pa.string())], metadata={b"pandas": json.dumps(meta).encode()}
    )


EXPORT_MARKER = "syphus-export.json"


def _exported_files(out: Path) -> set[str]:
    """The names an earlier ``export mimicit`` wrote in ``out`` (from its marker file)."""
    marker = out / EXPORT_MARKER
    if not marker.is_file():
        return set()
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
        files = (
            doc.get("files")
            if isinstance(doc, dict) and doc.get("written_by") == "syphus export mimicit"
            else None
        )
    except (ValueError, UnicodeDecodeError):
        return set()
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def export_mimicit(
    corpus: Corpus,
    out: Path,
    *,
    tasks: list[str] | None = None,
    include_flagged: bool = False,
    merge: str | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write one ``{TASK}_instructions.json`` / ``_train.json`` / ``.parquet`` per task (or, with
    ``merge``, one set named ``merge`` holding every task).

    The original Otter loader looks ids up only among the files of one dataset, so every id a
    file's ``rel_ins_ids`` and ``*_train.json`` name resolves inside that file: ids of another
    task's file, or of pairs not exported (flagged), are dropped and counted. ``merge`` keeps
    cross-task context by putting all tasks in one file.
    """
    out = Path(out)
    refuse_corpus_overlap(out, corpus.path)
    if out.exists() and not out.is_dir():
        raise SyphusError(f"--out {out}: exists and is not a folder; choose another path")
    if merge is not None:
        check_name(merge, what="--merge name")
    active_only = not include_flagged
    all_tasks = corpus.task_names(active_only=active_only)
    if tasks:
        unknown = [t for t in tasks if t not in all_tasks]
        if unknown:
            raise SyphusError(
                f"--task {unknown[0]}: no instructions of that task (tasks here: {', '.join(all_tasks) or 'none'})"
            )
    else:
        tasks = all_tasks
    if not tasks:
        raise SyphusError(f"{corpus.path}: no instructions to export")
    groups = {merge: list(tasks)} if merge is not None else {t: [t] for t in tasks}
    # every name is checked before anything is written: data never chooses a path outside --out
    targets = {
        name: tuple(
            safe_child(out, f"{name}{suffix}", what="task")
            for suffix in ("_instructions.json", "_train.json", ".parquet")
        )
        for name in groups
    }
    ours = _exported_files(out)
    for paths in targets.values():
        for path in paths:
            if (path.exists() or path.is_symlink()) and path.name not in ours:
                raise SyphusError(
                    f"--out {out}: '{path.name}' exists and was not written by 'syphus export mimicit'; "
                    "choose another folder or move it away"
                )
    out.mkdir(parents=True, exist_ok=True)
    # the marker names the files before they are written, so a killed export can be rerun here
    ours |= {p.name for paths in targets.values() for p in paths}
    write_json_atomic(
        out / EXPORT_MARKER,
        {"written_by": "syphus export mimicit", "corpus": str(corpus.path.resolve()), "files": sorted(ours)},
        indent=1,
    )
    # rel_ins_ids export ignores imported context maps and *_train.json export ignores imported
    # rel_ins_ids, so a round trip keeps both; a later retrieval run replaces both
    rel = corpus.context_excluding(METHOD_CONTEXT_MAP)
    mapped = corpus.context_excluding(METHOD_REL)
    exported_task = {
        ins_id: task for ins_id, task, _ in corpus.pair_keys(tasks=list(tasks), active_only=active_only)
    }
    # a pair whose images the corpus lacks would send Otter's loader to a missing parquet row
    missing_images = corpus.pairs_missing_images(list(tasks), active_only=active_only)
    for ins_id in missing_images:
        exported_task.pop(ins_id, None)
    report = ExportReport()
    report.skipped_missing_images = len(missing_images)
    stamp = now().strftime("%Y-%m-%d %H:%M:%S")
    for name, group_tasks in groups.items():
        rows = [
            p for p in corpus.pairs(tasks=group_tasks, active_only=active_only) if p.id not in missing_images
        ]
        in_file = {p.id for p in rows}

        data: dict[str, Any] = {}
        context_map: dict[str, list[str]] = {}
        image_ids: set[str] = set()
        for pair in rows:
            ins_id, lang, extra, imgs = pair.id, pair.lang, pair.extra, pair.image_ids
            rec: dict[str, Any] = {
                "instruction": pair.instruction,
                "answer": pair.answer,
                "image_ids": list(imgs),
                "rel_ins_ids": _resolvable(rel.get(ins_id, []), in_file, exported_task, report),
            }
            if extra:
                rec.update(extra)
            if lang != "en":
                rec["lang"] = lang
            data[ins_id] = rec
            context_map[ins_id] = (
                _resolvable(mapped[ins_id], in_file, exported_task, report)
                if ins_id in mapped
                else list(rec["rel_ins_ids"])
            )
            image_ids.update(imgs)
        meta = {"version": "syphus-0.1.0", "time": stamp, "author": "syphus"}
        meta.update({"task": name} if merge is None else {"tasks": group_tasks})
        f_ins, f_train, f_img = targets[name]
        write_json_atomic(f_ins, {"meta": meta, "data": data})
        write_json_atomic(f_train, context_map)
        report.files += [str(f_ins), str(f_train)]
        report.instructions += len(data)
        if image_ids:
            n, nbytes = _write_images_parquet(corpus, sorted(image_ids), f_img, progress)
            report.files.append(str(f_img))
            report.images += n
            report.image_bytes += nbytes
    return report


def _resolvable(
    ids: list[str], in_file: set[str], exported: dict[str, str], report: ExportReport
) -> list[str]:
    """The ids that resolve inside the file being written; the others are counted."""
    for i in ids:
        if i not in in_file:
            if i in exported:
                report.dropped_cross_file += 1
            else:
                report.dropped_not_exported += 1
    return [i for i in ids if i in in_file]


def _write_images_parquet(
    corpus: Corpus, ids: list[str], path: Path, progress: Progress | None
) -> tuple[int, int]:
    schema = pandas_images_schema()
    tmp = path.with_name(path.name + ".partial")
    n = nbytes = 0
    with pq.ParquetWriter(tmp, schema, compression="none", use_dictionary=False) as w:
        batch_ids: list[str] = []
        batch_b64: list[str] = []
        for iid, data in corpus.iter_images(ids):
            batch_ids.append(iid)
            batch_b64.append(base64.b64encode(data).decode("ascii"))
            n += 1
            nbytes += len(data)
            if progress:
                progress(1, len(data))
            if len(batch_ids) == 128:
                w.write_table(pa.table({"base64": batch_b64, "id": batch_ids}, schema=schema))
                batch_ids, batch_b64 = [], []
        if batch_ids:
            w.write_table(pa.table({"base64": batch_b64, "id": batch_ids}, schema=schema))
    tmp.replace(path)
    return n, nbytes
