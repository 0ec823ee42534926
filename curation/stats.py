"""Counts that tell whether a corpus is whole: per task and language, images, dangling references."""

from __future__ import annotations

from dataclasses import dataclass, field

from curation.store import Corpus


@dataclass
class CorpusStats:
    instructions: int
    by_task_lang: list[tuple[str, str, int]]
    images: int
    unique_blobs: int
    image_bytes: int
    shards: int
    missing_image_refs: int
    missing_context_refs: int
    flagged: int
    quarantined: int
    runs: list[tuple[str, str, str]] = field(default_factory=list)


def corpus_stats(corpus: Corpus) -> CorpusStats:
    q = corpus.con.execute

    def one(sql: str) -> int:
        return int(q(sql).fetchone()[0] or 0)

    return CorpusStats(
        instructions=one("SELECT count(*) FROM instructions"),
        by_task_lang=[
            tuple(r)
            for r in q("SELECT task, lang, count(*) FROM instructions GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        ],
        images=one("SELECT count(*) FROM images"),
        unique_blobs=one("SELECT count(*) FROM blobs"),
        image_bytes=one("SELECT sum(nbytes) FROM blobs"),
        shards=one("SELECT count(*) FROM image_shards"),
        missing_image_refs=one(
            "SELECT count(*) FROM instruction_images x WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.id = x.image_id)"
        ),
        missing_context_refs=one(
            "SELECT count(*) FROM current_context c WHERE NOT EXISTS (SELECT 1 FROM instructions i WHERE i.id = c.related_id)"
        ),
        flagged=one("SELECT count(DISTINCT ins_id) FROM instruction_flags WHERE active"),
        quarantined=one("SELECT count(*) FROM quarantine"),
        runs=[
            (r[0], r[1], r[2])
            for r in q("SELECT id, command, status FROM runs ORDER BY started_at").fetchall()
        ],
    )
