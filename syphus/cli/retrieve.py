"""Commands of the retrieve stage (registered on the main app): embed, retrieve, curate, mix."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from curation.embed import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL
from syphus.cli.options import CORPUS_ARGUMENT, CORPUS_OPTIONAL, resolve_corpus


def _quiet_threads() -> None:
    # OpenMP threads that spin while waiting collapse when the cores are shared; set before torch/faiss load
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _open(path: Path):
    from curation.store import Corpus

    return Corpus(path, create=False)


def embed(
    corpus: Path | None = CORPUS_ARGUMENT,
    corpus_option: Path | None = CORPUS_OPTIONAL,
    kind: str = typer.Option(
        "image", "--kind", help="What to embed: 'image' (every distinct image) or 'text' (instructions)."
    ),
    model: str = typer.Option(
        None,
        "--model",
        help=f"Embedder spec; default {DEFAULT_IMAGE_MODEL} for images, {DEFAULT_TEXT_MODEL} for text. Also st:PATH, open_clip:MODEL:TAG_OR_PATH.",
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Items per model call."),
    workers: int = typer.Option(
        2,
        "--workers",
        help="DataLoader worker processes that read and decode images (0: decode in the main process).",
    ),
    device: str = typer.Option(
        "cpu", "--device", help="Torch device for the model (cpu, cuda, cuda:1, ...)."
    ),
    chunk: int = typer.Option(
        1024, "--chunk", help="Under torchrun: items per rank per round before results are gathered."
    ),
) -> None:
    """Embed the corpus's images or instruction texts into the cache; reruns embed only what is new.

    Under `torchrun --nproc_per_node N syphus embed ...` every rank embeds its shard of the items
    (gloo on CPU, nccl on GPU) and rank 0 merges the results into the corpus.
    """
    corpus = resolve_corpus(corpus, corpus_option)
    _quiet_threads()
    from rich.console import Console

    if kind not in ("image", "text"):
        from schemas.errors import SyphusError

        raise SyphusError(f"--kind must be 'image' or 'text' (got '{kind}')")
    spec = model or (DEFAULT_IMAGE_MODEL if kind == "image" else DEFAULT_TEXT_MODEL)
    from curation.embed.distributed import embed_distributed, is_distributed
    from syphus.cli.ui import progress_bar

    if is_distributed():
        with progress_bar("embed", enabled=int(os.environ.get("RANK", "0")) == 0) as bar:
            stats = embed_distributed(
                str(corpus), spec, kind, batch_size=batch_size, workers=workers, device=device, chunk=chunk,
                progress=bar,
            )  # fmt: skip
        if int(os.environ.get("RANK", "0")) != 0:
            return
    else:
        from curation.embed.models import load_embedder
        from curation.embed.pipeline import embed_corpus

        with _open(corpus) as c, progress_bar("embed") as bar:
            emb = load_embedder(spec, device=device)
            stats = embed_corpus(c, emb, kind, batch_size=batch_size, workers=workers, progress=bar)
    Console().print(
        f"embedded {stats.embedded} {kind}s with {stats.model} ({stats.cached} already cached, {stats.total} in corpus)"
        f" in {stats.seconds:.1f}s" + (f", {stats.per_second:.1f}/s" if stats.embedded else "")
    )
    if stats.undecodable:
        Console().print(
            f"skipped {stats.undecodable} image(s) whose stored bytes do not decode, e.g. {stats.undecodable_example}"
        )


def retrieve(
    corpus: Path | None = CORPUS_ARGUMENT,
    corpus_option: Path | None = CORPUS_OPTIONAL,
    policy: str = typer.Option(
        "t2t", "--policy", help="i2i (image similarity), t2t (instruction similarity) or mixed."
    ),
    k: int = typer.Option(4, "--k", help="Related instructions per query."),
    image_model: str = typer.Option(
        DEFAULT_IMAGE_MODEL, "--image-model", help="Embedder spec for images (i2i, mixed)."
    ),
    text_model: str = typer.Option(
        DEFAULT_TEXT_MODEL, "--text-model", help="Embedder spec for instruction text (t2t, mixed)."
    ),
    image_weight: float = typer.Option(
        0.5, "--image-weight", help="mixed: score = w * image cosine + (1 - w) * text cosine."
    ),
    near_dup: float = typer.Option(
        0.98,
        "--near-dup",
        help="Exclude candidates whose score is at least this (near-duplicates); > 1 disables.",
    ),
    allow_same_image: bool = typer.Option(
        False, "--allow-same-image", help="Allow related pairs that share an image with the query."
    ),
    same_task: bool = typer.Option(False, "--same-task", help="Only relate instructions of the same task."),
    seed: int = typer.Option(0, "--seed", help="Seed for index training, recall samples and tie-breaking."),
    index: str = typer.Option(
        "auto", "--index", help="auto (Flat when small, IVF above), flat, ivf or hnsw."
    ),
    threads: int = typer.Option(0, "--threads", help="FAISS threads (0: all available cores)."),
    target_recall: float = typer.Option(
        0.95, "--target-recall", help="Approximate index: raise its effort until recall@k reaches this."
    ),
    recall_sample: int = typer.Option(
        1000, "--recall-sample", help="Queries checked against exact search to measure recall@k."
    ),
    batch_size: int = typer.Option(
        64, "--batch-size", help="Embedding batch size for items not yet embedded."
    ),
    workers: int = typer.Option(2, "--workers", help="Image decoding worker processes."),
    device: str = typer.Option("cpu", "--device", help="Torch device for embedding."),
) -> None:
    """Give every instruction its k most related instructions (MIMIC-IT rel_ins_ids) as a new context-set run."""
    corpus = resolve_corpus(corpus, corpus_option)
    _quiet_threads()
    from rich.console import Console
    from rich.table import Table

    from curation.context import ContextConfig, assign_context_sets

    cfg = ContextConfig(
        policy=policy,
        k=k,
        image_model=image_model,
        text_model=text_model,
        image_weight=image_weight,
        near_dup=None if near_dup > 1 else near_dup,
        exclude_same_image=not allow_same_image,
        same_task=same_task,
        seed=seed,
        index=index,
        threads=threads or None,
        target_recall=target_recall,
        recall_sample=recall_sample,
    )
    from syphus.cli.ui import progress_bar

    with _open(corpus) as c, progress_bar("retrieve") as bar:
        res = assign_context_sets(c, cfg, batch_size=batch_size, workers=workers, device=device, progress=bar)
    t = Table(title=f"retrieve {policy} k={k}  run {res.run_id}")
    for col in ("group", "items", "index", "params", "threads", "recall@k", "search s"):
        t.add_column(col)
    for name, r in res.reports.items():
        t.add_row(
            name,
            str(r.n),
            r.kind,
            ", ".join(f"{a}={b}" for a, b in r.params.items()),
            str(r.threads),
            "exact"
            if r.recall_at_k is None or r.kind == "flat"
            else f"{r.recall_at_k:.3f} (n={r.recall_sample})",
            f"{r.search_s:.2f}",
        )
    con = Console()
    con.print(t)
    con.print(
        f"{res.queries} queries, {res.rows} context rows, {res.short_queries} with fewer than k after exclusions,"
        f" {res.skipped_no_image} without images skipped; {res.seconds:.1f}s"
    )
    if res.undecodable_images:
        con.print(
            f"{res.undecodable_images} image(s) left out because their stored bytes do not decode"
            f" (e.g. '{res.undecodable_example}'); re-import them to include them"
        )


def curate_cmd(
    corpus: Path | None = CORPUS_ARGUMENT,
    corpus_option: Path | None = CORPUS_OPTIONAL,
    near_dup: float = typer.Option(
        0.95,
        "--near-dup",
        help="Flag instructions whose text cosine with an earlier one is at least this; > 1 disables.",
    ),
    near_dup_scope: str = typer.Option(
        "image",
        "--near-dup-scope",
        help="'image': only among instructions on the same images; 'all': corpus-wide.",
    ),
    text_model: str = typer.Option(
        DEFAULT_TEXT_MODEL, "--text-model", help="Embedder spec for near-duplicate detection."
    ),
    no_exact_dups: bool = typer.Option(False, "--no-exact-dups", help="Do not flag exact duplicates."),
    min_words: int = typer.Option(1, "--min-words", help="Flag answers with fewer words."),
    max_words: int = typer.Option(0, "--max-words", help="Flag answers with more words (0: no limit)."),
    banned_file: Path = typer.Option(
        None, "--banned-file", help="Extra banned phrases, one per line (added to the built-in list)."
    ),
    no_lang_check: bool = typer.Option(
        False, "--no-lang-check", help="Do not flag texts whose language differs from their lang field."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be flagged; write nothing."),
    unflag: str = typer.Option(
        None, "--unflag", help="Instead of filtering: deactivate flags ('all' or a flag name)."
    ),
    unflag_run: str = typer.Option(
        None, "--unflag-run", help="Instead of filtering: deactivate the flags of one curate run."
    ),
    device: str = typer.Option("cpu", "--device", help="Torch device for embedding."),
    min_score: float = typer.Option(
        None,
        "--min-score",
        help="Instead of the filters above: flag pairs a judge ('syphus score') scored below this "
        "(on the rubric's scale; each pair's latest verdict).",
    ),
    judge: str = typer.Option(
        None,
        "--judge",
        help="With --min-score: the judge model whose scores count (needed when several scored).",
    ),
) -> None:
    """Flag (never delete) duplicates, near-duplicates, bad lengths, banned phrases and wrong-language
    texts; or, with --min-score, pairs a judge scored below a threshold."""
    corpus = resolve_corpus(corpus, corpus_option)
    _quiet_threads()
    from rich.console import Console
    from rich.table import Table

    from curation import curate as cur
    from schemas.errors import SyphusError
    from syphus.cli.ui import progress_bar

    con = Console()
    if min_score is not None:
        cur.check_min_score(min_score)  # before the corpus is opened: a bad value changes nothing
    with _open(corpus) as c:
        if unflag or unflag_run:
            n = cur.unflag(c, flag=None if unflag in (None, "all") else unflag, run_id=unflag_run)
            con.print(f"deactivated {n} flags; those instructions are exported again")
            return
        if min_score is not None:
            res = cur.flag_low_scores(c, min_score, judge=judge, dry_run=dry_run)
            con.print(
                f"curate {'(dry run) ' if dry_run else ''}{res.total} instructions, {res.scored} scored by "
                f"{res.judge}: {res.flagged} below {min_score:g} flagged {cur.SCORE_FLAG}"
            )
            if res.run_id:
                con.print(f"run {res.run_id}; undo with: syphus curate {corpus} --unflag-run {res.run_id}")
            return
        if judge is not None:
            raise SyphusError("--judge: only with --min-score")
        banned = list(cur.DEFAULT_BANNED)
        if banned_file is not None:
            if not banned_file.is_file():
                raise SyphusError(f"{banned_file}: banned-phrases file not found")
            try:
                text = banned_file.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise SyphusError(f"{banned_file}: not UTF-8 text (byte {e.start}); one phrase a line") from e
            banned += [ln.strip() for ln in text.splitlines() if ln.strip()]
        cfg = cur.CurateConfig(
            exact_dups=not no_exact_dups,
            near_dup=None if near_dup > 1 else near_dup,
            near_dup_scope=near_dup_scope,
            text_model=text_model,
            min_answer_words=min_words or None,
            max_answer_words=max_words or None,
            banned=banned,
            check_lang=not no_lang_check,
            dry_run=dry_run,
        )
        with progress_bar("curate") as bar:
            res = cur.curate(c, cfg, device=device, progress=bar)
    t = Table(title=f"curate {'(dry run) ' if dry_run else ''}{res.total} instructions")
    t.add_column("flag")
    t.add_column("instructions", justify="right")
    for f, n in res.counts.items():
        t.add_row(f, str(n))
    con.print(t)
    if res.run_id:
        con.print(f"run {res.run_id}; undo with: syphus curate {corpus} --unflag-run {res.run_id}")


def _is_plan(path: Path) -> bool:
    """A plan 'syphus mix' wrote (so --out may replace it)."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"version", "mix_file", "seed", "datasets"} <= doc.keys()


def mix(
    mix_yaml: Path = typer.Argument(
        ..., help="Dataset-mix YAML (Otter's group format, or shards_path datasets)."
    ),
    out: Path = typer.Option(
        None, "--out", help="Where to write the JSON sampling plan (default: next to the YAML, .plan.json)."
    ),
    seed: int | None = typer.Option(
        None,
        "--seed",
        help="Seed for up- and down-sampling: the training config's `seed` (default: its default, 42).",
    ),
) -> None:
    """Resolve a dataset mix into a sampling plan for the trainer; print it as a table.

    The trainer draws with the same sampler and its config's seed, so with that seed the plan
    lists exactly the records that train."""
    from rich.console import Console
    from rich.table import Table

    from curation.mix import plan_mix
    from curation.outputs import check_output_file
    from schemas.train import TrainConfig

    if seed is None:
        seed = TrainConfig.model_fields["seed"].default

    out = out or mix_yaml.with_suffix(".plan.json")
    check_output_file(out, recognise=_is_plan, what="sampling plan")
    plan = plan_mix(mix_yaml, seed=seed, out=out)
    t = Table(title=f"mix {mix_yaml} (seed {seed})")
    for col in (
        "group",
        "dataset",
        "source",
        "available",
        "samples",
        "passes",
        "extra",
        "share of group",
        "share of total",
    ):
        t.add_column(col, justify="right" if col not in ("group", "dataset", "source") else "left")
    for e in plan.datasets:
        t.add_row(
            e.group,
            e.name,
            e.source,
            f"{e.available:,}",
            f"{e.num_samples:,}",
            str(e.full_passes),
            f"{len(e.extra):,}",
            f"{e.share_of_group:.1%}",
            f"{e.share_of_total:.1%}",
        )
    con = Console()
    con.print(t)
    for e in plan.datasets:
        if e.unknown:
            con.print(
                f"warning: {e.group}.{e.name}: {e.unknown:,} of {e.available:,} ids in {e.train_config_path} "
                "are not in the instructions file; training skips them (see max_skipped_fraction)"
            )
    groups = (
        ", ".join(f"{g} {n:,} ({n / plan.total:.1%})" for g, n in plan.groups.items())
        if plan.total
        else "empty"
    )
    con.print(f"total {plan.total:,}: {groups}; plan written to {out}")


def register(app: typer.Typer) -> None:
    app.command("embed")(embed)
    app.command("retrieve")(retrieve)
    app.command("curate")(curate_cmd)
    app.command("mix")(mix)
