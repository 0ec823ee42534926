"""Commands of the store stage: import, export, stats (registered on the main app)."""

from __future__ import annotations

from pathlib import Path

import typer

from syphus.cli.options import CORPUS

import_app = typer.Typer(
    help="Bring data into a corpus: original MIMIC-IT files, or plain image files.", no_args_is_help=True
)
export_app = typer.Typer(
    help="Write a corpus out: MIMIC-IT files, or training shards for 'syphus train'.", no_args_is_help=True
)

SKIP_BAD = typer.Option(
    False, "--skip-bad", help="Quarantine bad records and go on (counted in the summary) instead of stopping."
)
MAX_PIXELS = typer.Option(
    89_478_485, "--max-pixels", help="Reject images larger than this (decompression bombs)."
)


def _skipped_rows(r) -> list[tuple[str, str]]:
    """One summary row per skip reason: the count and the first example."""
    return [
        (f"skipped: {k}", f"{v} (e.g. {r.skip_examples[k]})" if k in r.skip_examples else str(v))
        for k, v in r.skipped.items()
    ]


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


@import_app.command("mimicit")
def import_mimicit_cmd(
    instructions: Path = typer.Argument(..., help="A MIMIC-IT *_instructions.json file."),
    corpus: Path = CORPUS,
    images: list[Path] = typer.Option(
        [],
        "--images",
        "-i",
        help="Images parquet (id index or column + 'base64') or images JSON {id: base64}; repeatable.",
    ),
    train: Path | None = typer.Option(
        None, "--train", help="The matching *_train.json (in-context example ids)."
    ),
    task: str | None = typer.Option(
        None, "--task", help="Task name to store (default: from ids like LA_INS_00001)."
    ),
    skip_bad: bool = SKIP_BAD,
    max_pixels: int = MAX_PIXELS,
    rows_per_shard: int = typer.Option(
        4096, "--rows-per-shard", help="Images per shard file (each is one commit)."
    ),
) -> None:
    """Import original MIMIC-IT files. Images stream in row batches, so files of any size fit in
    memory; a killed import keeps its finished shards and a rerun completes it. On bad input
    nothing of this command stays in the corpus."""
    import time

    from curation.mimicit_io import import_mimicit
    from curation.store import Corpus
    from syphus.cli.ui import progress_bar, summary_table

    t0 = time.perf_counter()
    with Corpus(corpus) as c, progress_bar("importing images", None, bytes_rate=True) as adv:
        r = import_mimicit(
            c,
            instructions,
            images=images,
            train=train,
            task=task,
            skip_bad=skip_bad,
            max_pixels=max_pixels,
            rows_per_shard=rows_per_shard,
            progress=adv,
        )
    dt = time.perf_counter() - t0
    rows = [
        ("run", r.run_id),
        ("instructions added", r.instructions_added),
        ("instructions already present", r.instructions_existing),
        ("images added", f"{r.images_added} ({r.images_deduplicated} identical to stored bytes)"),
        ("images already present", r.images_existing),
        ("image bytes", f"{_mb(r.image_bytes)} ({r.image_bytes / 1e6 / max(dt, 1e-9):.1f} MB/s)"),
        ("context links", r.context_rows),
    ]
    if r.context_unresolved:
        rows.append(
            (
                "context links to pairs not in the corpus (kept)",
                f"{r.context_unresolved} (e.g. '{r.context_unresolved_example}'; they resolve once "
                "the file holding them is imported, exports leave them out until then)",
            )
        )
    rows += _skipped_rows(r)
    summary_table(f"import mimicit {instructions.name}", rows)


@import_app.command("images")
def import_images_cmd(
    source: str = typer.Argument(
        ..., help="A directory (searched recursively) or a glob like 'photos/*.jpg'."
    ),
    corpus: Path = CORPUS,
    id_pattern: str = typer.Option(
        "{stem}", "--id-pattern", help="Image id from the path: fields {stem}, {name}, {parent}, {relpath}."
    ),
    skip_bad: bool = SKIP_BAD,
    max_pixels: int = MAX_PIXELS,
    rows_per_shard: int = typer.Option(
        4096, "--rows-per-shard", help="Images per shard file (each is one commit)."
    ),
) -> None:
    """Ingest image files as they are (original bytes, never re-encoded; identical bytes stored once)."""
    from curation.mimicit_io import import_image_files, iter_image_paths
    from curation.store import Corpus
    from syphus.cli.ui import progress_bar, summary_table

    files = iter_image_paths(source)
    with Corpus(corpus) as c, progress_bar("importing images", len(files), bytes_rate=True) as adv:
        r = import_image_files(
            c,
            source,
            id_pattern=id_pattern,
            skip_bad=skip_bad,
            max_pixels=max_pixels,
            rows_per_shard=rows_per_shard,
            progress=adv,
            files=files,
        )
    rows = [
        ("run", r.run_id),
        ("images added", f"{r.images_added} ({r.images_deduplicated} deduplicated)"),
        ("already present", r.images_existing),
        ("bytes", _mb(r.image_bytes)),
    ]
    rows += _skipped_rows(r)
    summary_table(f"import images {source}", rows)


@export_app.command("mimicit")
def export_mimicit_cmd(
    corpus: Path = CORPUS,
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    task: list[str] = typer.Option([], "--task", "-t", help="Only these tasks (repeatable); default all."),
    include_flagged: bool = typer.Option(
        False, "--include-flagged", help="Also export pairs 'syphus curate' flagged."
    ),
    merge: str | None = typer.Option(
        None,
        "--merge",
        help="Write all tasks into one NAME_instructions.json / NAME_train.json / NAME.parquet, "
        "keeping in-context examples that cross tasks.",
    ),
) -> None:
    """Write {TASK}_instructions.json, {TASK}_train.json and {TASK}.parquet (images keyed by id,
    'base64' column) in the layout the original Otter code reads. Every id a file's rel_ins_ids
    and *_train.json name is in that same file (Otter resolves ids only there): in-context ids
    of another task's file are dropped and counted, unless --merge puts all tasks in one file."""
    from curation.mimicit_io import export_mimicit
    from curation.store import Corpus
    from syphus.cli.ui import progress_bar, summary_table

    with Corpus(corpus, create=False) as c, progress_bar("exporting images", None, bytes_rate=True) as adv:
        r = export_mimicit(
            c, out, tasks=task or None, include_flagged=include_flagged, merge=merge, progress=adv
        )
    rows = [("instructions", r.instructions), ("images", r.images), ("image bytes", _mb(r.image_bytes))]
    if r.dropped_cross_file:
        rows.append(
            (
                "in-context ids dropped: in another task's file",
                f"{r.dropped_cross_file} (keep them with --merge NAME, or retrieve with --same-task)",
            )
        )
    if r.skipped_missing_images:
        rows.append(("pairs skipped (missing images)", r.skipped_missing_images))
    if r.dropped_not_exported:
        rows.append(("in-context ids dropped: pair not exported", r.dropped_not_exported))
    summary_table(f"export mimicit -> {out}", rows + [("file", f) for f in r.files])


@export_app.command("shards")
def export_shards_cmd(
    corpus: Path = CORPUS,
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (replaced atomically when done)."),
    task: list[str] = typer.Option([], "--task", "-t", help="Only these tasks (repeatable)."),
    lang: list[str] = typer.Option([], "--lang", "-l", help="Only these languages (repeatable)."),
    rows_per_part: int = typer.Option(2048, "--rows-per-part", help="Instructions per part file."),
    max_context: int = typer.Option(
        8, "--max-context", help="At most this many in-context examples per pair."
    ),
) -> None:
    """Write self-contained training shards (pairs + their in-context examples + the image bytes
    they use) and a manifest.json: what 'syphus train' reads."""
    from curation.shards_export import export_shards
    from curation.store import Corpus
    from syphus.cli.ui import progress_bar, summary_table

    with Corpus(corpus, create=False) as c:
        total = c.count_active()
        with progress_bar("exporting shards", total) as adv:
            r = export_shards(
                c,
                out,
                tasks=task or None,
                langs=lang or None,
                rows_per_part=rows_per_part,
                max_context=max_context,
                progress=adv,
            )
    summary_table(
        f"export shards -> {out}",
        [
            ("pairs", r.rows),
            ("parts", r.parts),
            ("images", r.images),
            ("skipped (missing images)", r.skipped_missing_images),
            ("in-context examples left out (pair or its images missing)", r.context_dropped),
            ("manifest", r.manifest),
        ],
    )


def stats_cmd(corpus: Path = CORPUS) -> None:
    """Counts per task and language, images, and dangling references."""
    from curation.store import Corpus
    from syphus.cli.ui import summary_table

    with Corpus(corpus, create=False, read_only=True) as c:
        s = c.stats()
    summary_table(
        f"corpus {corpus}", [(t, lang, n) for t, lang, n in s.by_task_lang], headers=("task", "lang", "pairs")
    )
    summary_table(
        "totals",
        [
            ("pairs", s.instructions),
            ("images (ids)", s.images),
            ("images (unique bytes)", f"{s.unique_blobs} in {s.shards} shards, {_mb(s.image_bytes)}"),
            ("missing image references", s.missing_image_refs),
            ("missing in-context references", s.missing_context_refs),
            ("flagged by curate", s.flagged),
            ("quarantined", s.quarantined),
            ("runs", len(s.runs)),
        ],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
    app.add_typer(export_app, name="export")
    app.command("stats")(stats_cmd)
