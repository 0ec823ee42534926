"""``--translate-to``: the pairs a generate run produced, translated by the ``translate`` task.

Each target language is one more generation over the same request log, so translations
resume, skip what is done and are accounted exactly like the pairs they come from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curation.store import Corpus
from schemas.progress import Progress
from syphus.engine.pipeline import (
    GenerateOptions,
    Generation,
    build_requests,
    load_annotations,
    plan_requests,
    resolve_task,
)
from syphus.tasks.base import Task


def source_pairs(corpus: Corpus, keys: list[str]) -> list[Any]:
    """English pairs stored from these request keys, in id order, as translate-task input."""
    from schemas.annotations import SourcePair

    return [
        SourcePair(id=p.id, instruction=p.instruction, answer=p.answer, image_ids=p.image_ids)
        for p in corpus.pairs(lang="en", request_keys=keys)
    ]


def translate_run(task: Task, paths: list[Path], corpus_dir: Path, opts: GenerateOptions, langs: list[str],
                  progress: Progress | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One generation per language over the pairs these annotations produced; a summary each, in
    the order of ``langs``."""
    loaded = load_annotations(task, paths, opts.limit)
    out = []
    with Corpus(corpus_dir) as corpus:
        # the same requests as the generate run, images included, to find the pairs it stored
        source = opts.image_source(corpus) if opts.images_wanted(task) else None
        keys = [r.key for r in plan_requests(task, loaded, opts, source)[0]]
        pairs = source_pairs(corpus, keys)
        for lang in langs:
            tt = resolve_task("translate", lang=lang)
            tanns = list(tt.annotations_from_pairs(pairs, source_file=str(corpus_dir)))
            reqs, shared = build_requests(tt, tanns, opts.model, opts.params())
            gen = Generation(tt, corpus, opts, progress)
            summary = gen.run(
                gen.plan(reqs, shared), {"task": "translate", "lang": lang, "model": opts.model}
            )
            out.append(summary)
    return out
