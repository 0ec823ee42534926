"""``syphus generate`` / ``preview`` / ``reparse``: annotations in, pairs in the corpus out.

For each annotation the task renders chat messages; the request key is the hash of (model,
messages, parameters). Keys already finished in the corpus's request log are skipped, the
rest go to the scheduler (or a batch API); every reply is journaled at once, parsed by the
task, and folded into the corpus with its pairs, or quarantined with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from curation.store import DB_NAME, Corpus, InstructionRow
from schemas.errors import SyphusError
from schemas.progress import Progress, no_progress
from syphus.engine.backends import ChatRequest, Completion
from syphus.engine.images import (
    RULES,
    ImageError,
    ImageSource,
    default_max_side,
    image_parts,
    image_tokens,
    provider_family,
    require_images,
    with_images,
)
from syphus.engine.keys import redact
from syphus.engine.pricing import estimate_tokens, price_of
from syphus.engine.requestlog import Ingest, RequestLog, RequestRecord, request_key
from syphus.engine.scheduler import Outcome, Scheduler, SchedulerConfig, Stats
from syphus.tasks.base import Annotation, Merged, ReadNote, ResponseParseError, Skipped, Task

DEFAULT_MODEL = "local/smollm2-135m"


@dataclass
class GenerateOptions:
    model: str = DEFAULT_MODEL
    api_base: str | None = None
    backend: str = "auto"
    batch: bool = False
    concurrency: int = 16
    rpm: float | None = None
    tpm: float | None = None
    timeout: float = 120.0
    max_cost: float | None = None
    limit: int | None = None
    temperature: float = 0.7
    max_tokens: int = 1024
    max_attempts: int = 6
    poll_interval: float = 30.0
    task_options: dict[str, Any] = field(default_factory=dict)
    with_images: bool = False  # attach each annotation's images (the task may ask for them too)
    image_max_side: int | None = None  # None: the provider's default (images.DEFAULT_MAX_SIDE)
    image_detail: str = "auto"  # OpenAI's detail: auto | low | high

    def images_wanted(self, task: Task | None = None) -> bool:
        return self.with_images or bool(getattr(task, "wants_images", False))

    def image_family(self) -> str:
        return provider_family(self.model, self.backend, self.api_base)

    def image_source(self, corpus: Corpus | None) -> ImageSource:
        side = self.image_max_side or default_max_side(self.model, self.backend, self.api_base)
        return ImageSource(corpus, max_side=side, detail=self.image_detail)

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


# -- tasks and requests ------------------------------------------------------------------------


def resolve_task(name: str, **options: Any) -> Task:
    """A registered task name (``LA``, ``DC``, ...), or ``package.module:Class`` for your own."""
    if ":" in name:
        mod_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise SyphusError(f"--task {name}: cannot import ({e})") from e
        return factory(**options)
    try:
        from syphus.tasks.registry import get_task
    except ImportError as e:
        raise SyphusError(f"--task {name}: the task registry is not available ({e})") from e
    return get_task(name, **options)


def task_of(task: Task, ann: Annotation) -> str:
    return str(ann.extra.get("task") or task.name)


def lang_of(task: Task, ann: Annotation) -> str:
    return str(ann.extra.get("lang") or getattr(task, "lang", "en"))


@dataclass
class Loaded:
    """What a task's reader gave: the annotations, and every record that did not become an
    annotation of its own, counted by reason with the first example (nothing vanishes unseen)."""

    annotations: list[Annotation] = field(default_factory=list)
    skipped: dict[str, list[Any]] = field(default_factory=dict)  # reason -> [count, first where]
    merged: dict[str, list[Any]] = field(default_factory=dict)

    def note(self, item: ReadNote) -> None:
        book = self.skipped if isinstance(item, Skipped) else self.merged
        book.setdefault(item.reason, [0, item.where])[0] += 1

    @property
    def n_skipped(self) -> int:
        return sum(n for n, _ in self.skipped.values())

    @property
    def n_merged(self) -> int:
        return sum(n for n, _ in self.merged.values())

    @property
    def records(self) -> int:
        return len(self.annotations) + self.n_skipped + self.n_merged

    def lines(self) -> list[str]:
        """One line per reason: how many records, why, and the first of them."""
        return [
            f"{kind} {n}: {reason} (first: {where})"
            for kind, book in (("skipped", self.skipped), ("merged", self.merged))
            for reason, (n, where) in book.items()
        ]


def _annotation_digest(ann: Annotation) -> str:
    import json

    data = ann.data.model_dump(mode="json") if hasattr(ann.data, "model_dump") else str(ann.data)
    canon = json.dumps([ann.image_ids, data, ann.extra], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.blake2b(canon.encode("utf-8"), digest_size=16).hexdigest()


def load_annotations(task: Task, paths: Iterable[Path], limit: int | None) -> Loaded:
    """Read every annotation (the first ``limit``), counting what the reader skipped or merged;
    an annotation repeated exactly (same task, id and content) is kept once and counted."""
    out = Loaded()
    seen: dict[tuple[str, str], str] = {}
    for item in task.read([Path(p) for p in paths]):
        if isinstance(item, ReadNote):
            out.note(item)
            continue
        if limit is not None and len(out.annotations) >= limit:
            break
        ident, digest = (task_of(task, item), item.id), _annotation_digest(item)
        if seen.get(ident) == digest:
            out.note(Merged("exact duplicate annotation", f"{item.source_file}: {item.id}"))
            continue
        seen[ident] = digest
        out.annotations.append(item)
    return out


def images_note(n: int) -> dict:
    """The text part put before the images of a task written for annotations alone."""
    what = "The image of this annotation is" if n == 1 else f"The {n} images of this annotation are"
    return {"type": "text", "text": f"{what} attached below, in order. Use what you see in them as well as the text above."}  # fmt: skip


def keep_with_images(
    anns: list[Annotation], source: ImageSource, loaded: Loaded | None = None
) -> list[Annotation]:
    """The annotations whose every image the source can send; each other one is counted in
    ``loaded`` as skipped with its image's reason (missing, corrupt), before any request."""
    status = source.parts(i for a in anns for i in a.image_ids)
    kept = []
    for ann in anns:
        bad = next((i for i in ann.image_ids if isinstance(status[i], ImageError)), None)
        if bad is None:
            kept.append(ann)
        elif loaded is not None:
            loaded.note(Skipped(status[bad].reason, f"{ann.source_file}: {ann.id}: image '{bad}'"))
    if loaded is not None:
        loaded.annotations = kept
    return kept


def build_requests(
    task: Task,
    anns: list[Annotation],
    model: str,
    params: dict[str, Any],
    images: ImageSource | None = None,
    family: str = "openai",
) -> tuple[list[ChatRequest], int]:
    """One request per distinct prompt. Annotations whose prompt is identical to an earlier
    one's are asked once and share its reply: they ride on that request (``shared``) and each
    gets its own pairs. Returns (requests, how many annotations share another's request).

    With ``images``, each annotation's images (its ``image_ids``, in order) ride on its last user
    message as image parts; check them first with ``keep_with_images``."""
    by_key: dict[str, ChatRequest] = {}
    out: list[ChatRequest] = []
    for ann in anns:
        msgs = task.messages(ann)
        extra_tokens = 0
        if images is not None and ann.image_ids:
            parts = [images.part(i) for i in ann.image_ids]
            # a text task's prompt says it sees no pixels: tell it that now it does
            note = [] if getattr(task, "wants_images", False) else [images_note(len(parts))]
            msgs = with_images(msgs, note + parts)
            extra_tokens = sum(image_tokens(p, family) for p in parts)
        key = request_key(model, msgs, params)
        if key in by_key:
            by_key[key].shared.append(ann)
            continue
        req = ChatRequest(
            key=key,
            model=model,
            messages=msgs,
            params=dict(params),
            task=task_of(task, ann),
            source_id=ann.id,
            est_prompt_tokens=estimate_tokens(msgs) + extra_tokens,
            ctx=ann,
        )  # fmt: skip
        by_key[key] = req
        out.append(req)
    return out, len(anns) - len(out)


def make_ingest(
    task: Task,
    ann: Annotation,
    key: str,
    text: str,
    finish_reason: str | None,
    run_id: str,
    shared: Iterable[Annotation] = (),
    primary_id: str | None = None,
) -> Ingest:
    """Parse one reply for its annotation and every annotation sharing the request: pairs with
    ids derived from the request key, or a quarantine entry per annotation.

    The annotation the request was first sent for (``primary_id``, default ``ann.id``) keeps the
    plain ids ``{task}_INS_{key[:16]}_{i:02d}``; the others add a stable tag of their own id, so
    ids do not depend on the order annotations are read in."""
    primary_id = ann.id if primary_id is None else primary_id
    ing = Ingest(run_id)
    done: set[tuple[str, str]] = set()
    for a in [ann, *shared]:
        ident = (task_of(task, a), a.id)
        if ident in done:  # the same annotation twice: one set of pairs
            continue
        done.add(ident)
        tag = "" if a.id == primary_id else "_" + hashlib.sha256(a.id.encode("utf-8")).hexdigest()[:8]
        one = _ingest_one(task, a, key, tag, text, finish_reason, run_id)
        ing.rows += one.rows
        ing.quarantine += one.quarantine
    return ing


def _ingest_one(
    task: Task, ann: Annotation, key: str, tag: str, text: str, finish_reason: str | None, run_id: str
) -> Ingest:
    name = task_of(task, ann)
    where = {"source": key, "record_id": ann.id, "raw": text}
    if not text.strip():
        return Ingest(run_id, quarantine=[{"reason": "empty reply", **where}])
    if finish_reason == "length":
        # a cut reply usually ends in half an answer: keep it out, raw kept for a rerun with more tokens
        return Ingest(
            run_id,
            quarantine=[{"reason": "reply truncated (finish_reason=length); raise --max-tokens", **where}],
        )
    try:
        pairs = task.parse(text, ann)
    except ResponseParseError as e:
        return Ingest(run_id, quarantine=[{"reason": f"unparseable: {e}", **where}])
    except Exception as e:  # a parser bug must not lose a paid reply: keep it for reparse
        return Ingest(run_id, quarantine=[{"reason": f"parser error: {type(e).__name__}: {e}", **where}])
    if not pairs:
        return Ingest(run_id, quarantine=[{"reason": "the reply has no pairs", **where}])
    parents = list(ann.extra.get("source_ids") or [])  # translations point at the pair they translate
    rows = [
        InstructionRow(
            id=f"{name}_INS_{key[:16]}{tag}_{i:02d}",
            task=name,
            instruction=p.instruction,
            answer=p.answer,
            image_ids=list(ann.image_ids),
            lang=lang_of(task, ann),
            source_id=ann.id,
            parent_id=parents[i] if i < len(parents) else None,
            extra={"request_key": key},
        )  # fmt: skip
        for i, p in enumerate(pairs)
    ]
    return Ingest(run_id, rows=rows)


# -- generate ------------------------------------------------------------------------------------


@dataclass
class ImageCheck:
    """How many image ids the annotations reference that the corpus does not hold."""

    referenced: int
    missing: int
    example: str | None = None  # a missing id
    corpus_example: str | None = None  # an id the corpus does hold, to compare names with

    def warning(self, task: Task, corpus_dir: Path) -> str | None:
        if not self.missing:
            return None
        pattern = getattr(task, "image_id_pattern", None)
        fields = ", ".join(getattr(task, "image_id_fields", ()) or ())
        has = (
            f"; the corpus has e.g. '{self.corpus_example}'"
            if self.corpus_example
            else "; the corpus has no images"
        )
        mapping = f" (now '{pattern}'" + (f"; fields: {fields})" if fields else ")") if pattern else ""
        return (
            f"{self.missing} of {self.referenced} image ids these annotations reference are not in {corpus_dir} "
            f"(e.g. '{self.example}'{has}): pairs without their images are skipped at export. Import the images "
            f"(syphus import images DIR --corpus {corpus_dir} names each by its file stem) or map the ids to the "
            f"corpus's names with --task-option image_id_pattern=PATTERN{mapping}"
        )


def check_images(anns: list[Annotation], corpus: Corpus | None) -> ImageCheck:
    """Compare the image ids the annotations name with the corpus, before anything is sent."""
    wanted = list(dict.fromkeys(i for a in anns for i in a.image_ids))
    if corpus is None:
        return ImageCheck(len(wanted), len(wanted), wanted[0] if wanted else None)
    have: set[str] = set()
    for start in range(0, len(wanted), 50_000):
        have.update(corpus.has_images(wanted[start : start + 50_000]))
    missing = [i for i in wanted if i not in have]
    if not missing:
        return ImageCheck(len(wanted), 0)
    return ImageCheck(len(wanted), len(missing), missing[0], corpus.first_image_id())


@dataclass
class Plan:
    requests: list[ChatRequest]
    shared: int  # annotations whose prompt is identical to another's: asked once, pairs to each
    already_done: int
    todo: list[ChatRequest]
    loaded: Loaded | None = None
    images: ImageCheck | None = None

    def accounting(self) -> dict[str, Any]:
        """Every annotation record read, and where it went."""
        annotations = len(self.requests) + self.shared
        ld = self.loaded
        return {
            "records_read": ld.records if ld else annotations,
            "skipped": ld.n_skipped if ld else 0,
            "merged_records": ld.n_merged if ld else 0,
            "annotations": annotations,
            "requests": len(self.requests),
            "identical_prompt": self.shared,
            "already_done": self.already_done,
            **({"images_missing": self.images.missing} if self.images else {}),
        }

    def notes(self) -> list[str]:
        return self.loaded.lines() if self.loaded else []


def make_plan(
    reqs: list[ChatRequest],
    shared: int,
    log: RequestLog | None,
    loaded: Loaded | None = None,
    images: ImageCheck | None = None,
) -> Plan:
    """What to send: the requests the log has not finished (all of them without a log)."""
    done = log.done_keys(r.key for r in reqs) if log is not None else set()
    return Plan(reqs, shared, len(done), [r for r in reqs if r.key not in done], loaded, images)


def open_backend(opts: GenerateOptions, *, images: Any = None, warn: Callable[[str], None] | None = None):
    """The backend the options name, sized for their concurrency and timeout. ``images`` (an
    ImageSource) supplies the bytes of image parts at send time."""
    from syphus.engine.backends import make_backend

    extra = {"images": images} if images is not None else {}
    return make_backend(opts.model, api_base=opts.api_base, concurrency=opts.concurrency,
                        timeout=opts.timeout, backend=opts.backend, **extra)  # fmt: skip


def scheduler_config(opts: GenerateOptions) -> SchedulerConfig:
    return SchedulerConfig(
        concurrency=opts.concurrency, rpm=opts.rpm, tpm=opts.tpm, timeout=opts.timeout,
        max_attempts=opts.max_attempts, max_cost=opts.max_cost,
    )  # fmt: skip


def progress_status(s: Stats) -> str:
    """The running figures of a generation, for a progress display."""
    el = s.elapsed()
    return (f"{(s.done + s.errors) / el:.1f} req/s {(s.prompt_tokens + s.completion_tokens) / el:.0f} tok/s "
            f"${s.cost:.4f} {s.errors} err")  # fmt: skip


class RequestRun:
    """Requests sent through the scheduler (or a batch API) into a corpus's request log, with
    cost, progress and a run record: what ``generate`` and ``ask`` share. A subclass says what a
    reply turns into (:meth:`ingest`); ``progress`` hears of every finished request, ``warn`` of
    an endpoint drained from a pool."""

    label = "generate"

    def __init__(self, corpus: Corpus, opts: GenerateOptions, progress: Progress | None = None, *,
                 images: Any = None, warn: Callable[[str], None] | None = None):  # fmt: skip
        self.corpus = corpus
        self.opts = opts
        self.progress = progress or no_progress
        self.images = images
        self.warn = warn
        self._shown = 0  # finished requests already reported to progress
        self.log = RequestLog(corpus)
        self.price = price_of(opts.model, batch=opts.batch)
        self.stats = Stats()
        self.run_id: str | None = None
        self.backend_name = "batch" if opts.batch else opts.backend
        self.drained: list[str] = []  # endpoints a pool gave up on during the run

    def ingest(self, req: ChatRequest, c: Completion) -> Ingest | None:
        """What a reply becomes in the corpus besides its log row (None: nothing)."""
        return None

    def on_outcome(self, o: Outcome) -> None:
        import datetime as dt

        req = o.req
        started = dt.datetime.fromtimestamp(o.started_at, dt.timezone.utc).replace(tzinfo=None)
        c = o.completion
        if c is None:
            error = redact(o.error)  # the one place errors are stored: no key reaches the corpus
            self.log.record(
                RequestRecord(
                    key=req.key,
                    model=req.model,
                    status="error",
                    task=req.task,
                    source_id=req.source_id,
                    error=error,
                    attempts=o.attempts,
                    run_id=self.run_id,
                    backend=self.backend_name,
                    started_at=started,
                    latency_s=o.latency_s,
                )  # fmt: skip
            )
            self.stats.note_error(error or "error")
            return
        rec = RequestRecord(
            key=req.key, model=req.model, status="done", task=req.task, source_id=req.source_id, raw=c.text,
            finish_reason=c.finish_reason, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
            cost=self.price.cost(c.prompt_tokens, c.completion_tokens), attempts=o.attempts, run_id=self.run_id,
            backend=self.backend_name, started_at=started, latency_s=o.latency_s,
        )  # fmt: skip
        self.log.record(rec, self.ingest(req, c))

    def _report(self) -> None:
        finished = self.stats.done + self.stats.errors
        self.progress(finished - self._shown, status=progress_status(self.stats))
        self._shown = finished

    async def _tick(self) -> None:
        last_fold = time.monotonic()
        while True:
            await asyncio.sleep(0.25)
            self._report()
            if time.monotonic() - last_fold >= 2.0:
                self.log.fold()  # keep the database close to the journal; each fold is one transaction
                last_fold = time.monotonic()

    async def _run_async(self, todo: list[ChatRequest]) -> tuple[str | None, BaseException | None]:
        self.stats, self._shown = Stats(total=len(todo)), 0
        self.progress(0, total=len(todo), label=self.label)
        ticker = asyncio.create_task(self._tick())
        try:
            if self.opts.batch:
                from syphus.engine.batch import run_batch

                reason = await run_batch(self, todo)
                return reason, None
            backend = open_backend(self.opts, images=self.images, warn=self.warn)
            self.backend_name = backend.name
            sched = Scheduler(backend, scheduler_config(self.opts), self.price, self.on_outcome, self.stats)
            try:
                await sched.run(todo)
            finally:
                await backend.aclose()
                self.drained = list(getattr(backend, "drained", []))
            return sched.stop_reason, sched.fatal
        finally:
            ticker.cancel()
            self._report()

    def start(self, kind: str, config: dict[str, Any]) -> str:
        self.run_id = self.corpus.start_run(kind, config)
        return self.run_id

    def execute(self, todo: list[ChatRequest], lead: dict[str, Any],
                trail: Callable[[], dict[str, Any]] = dict) -> dict[str, Any]:  # fmt: skip
        """Send ``todo`` and close the run (started with :meth:`start`); returns its summary:
        ``lead``, the run's figures, then what ``trail`` says once the run is over. A fatal backend error is raised after the summary
        is stored."""
        status, fatal = "failed", None
        t0 = time.perf_counter()
        try:
            reason, fatal = asyncio.run(self._run_async(todo))
            status = {"budget": "budget", "fatal": "failed"}.get(reason or "", "done")
            if status == "done" and self.stats.errors:
                status = "done_with_errors"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self.log.close()
            summary = {"status": status, **lead, **self.figures(time.perf_counter() - t0), **trail()}
            self.corpus.finish_run(self.run_id, status, summary)
        if fatal is not None:
            raise fatal
        return summary

    def figures(self, wall: float) -> dict[str, Any]:
        s = self.stats
        return {
            "sent": s.done + s.errors,
            "done": s.done,
            "errors": s.errors,
            "retries": s.retries,
            "pairs": s.pairs,
            "quarantined": s.quarantined,
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "cost_usd": s.cost,
            "price_known": self.price.known,
            "wall_s": wall,
            "req_per_s": (s.done + s.errors) / wall if wall > 0 else 0.0,
            "tok_per_s": (s.prompt_tokens + s.completion_tokens) / wall if wall > 0 else 0.0,
            **({"drained_endpoints": list(self.drained)} if self.drained else {}),
            "last_errors": list(s.last_errors),
        }


class Generation(RequestRun):
    """One ``syphus generate`` run on an open corpus: every reply is parsed into pairs."""

    def __init__(self, task: Task, corpus: Corpus, opts: GenerateOptions, progress: Progress | None = None,
                 *, images: ImageSource | None = None, warn: Callable[[str], None] | None = None):  # fmt: skip
        super().__init__(corpus, opts, progress, images=images, warn=warn)
        self.task = task

    def plan(self, reqs: list[ChatRequest], shared: int, loaded: Loaded | None = None) -> Plan:
        return make_plan(reqs, shared, self.log, loaded)

    def ingest_finished(self, reqs: list[ChatRequest]) -> int:
        """Pairs of replies already received but not stored for every annotation that asked: a
        killed run's, and an answered prompt that annotations added since share (no request)."""
        by_key = {r.key: r for r in reqs}
        recs = self.log.uningested(by_key)
        for rec in recs:
            req = by_key[rec.key]
            self.log.add_ingest(
                rec.key,
                make_ingest(self.task, req.ctx, rec.key, rec.raw or "", rec.finish_reason, self.run_id,
                            req.shared, primary_id=rec.source_id),
            )  # fmt: skip
        late = self._ingest_late_sharers([r for r in reqs if r.shared], {rec.key for rec in recs})
        self.log.fold()
        return len(recs) + late

    def _ingest_late_sharers(self, reqs: list[ChatRequest], ingesting: set[str]) -> int:
        """Annotations whose prompt was answered for another annotation before they were read."""
        reqs = [r for r in reqs if r.key not in ingesting]
        done = {rec.key: rec for rec in self.log.done_records(r.key for r in reqs)}
        if not done:
            return 0
        keys = list(done)
        have = self.corpus.answered_sources(keys)
        n = 0
        for req in reqs:
            rec = done.get(req.key)
            if rec is None:
                continue
            missing = [
                a for a in [req.ctx, *req.shared] if (req.key, task_of(self.task, a), a.id) not in have
            ]
            if missing:
                self.log.add_ingest(
                    req.key,
                    make_ingest(self.task, missing[0], req.key, rec.raw or "", rec.finish_reason, self.run_id,
                                missing[1:], primary_id=rec.source_id),
                )  # fmt: skip
                n += len(missing)
        return n

    def ingest(self, req: ChatRequest, c: Completion) -> Ingest:
        ing = make_ingest(self.task, req.ctx, req.key, c.text, c.finish_reason, self.run_id, req.shared)
        self.stats.pairs += len(ing.rows)
        self.stats.quarantined += len(ing.quarantine)
        return ing

    def run(self, plan: Plan, config: dict[str, Any]) -> dict[str, Any]:
        self.start("generate", config)
        resumed = self.ingest_finished(plan.requests)
        lead = {**plan.accounting(), "stored_from_earlier_replies": resumed}
        return self.execute(plan.todo, lead, lambda: {"notes": plan.notes()})


def _config_of(task: Task, paths: list[Path], opts: GenerateOptions) -> dict[str, Any]:
    d = asdict(opts)
    d["task"] = task.name
    d["annotations"] = [str(p) for p in paths]
    return d  # never holds a key: keys are read from env/config by the backends only


def estimate(plan: Plan, opts: GenerateOptions, log: RequestLog | None) -> dict[str, Any]:
    """What a run would send and cost, without sending anything."""
    price = price_of(opts.model, batch=opts.batch)
    ptoks = sum(r.est_prompt_tokens for r in plan.todo)
    typical = log.mean_completion_tokens(opts.model) if log else None
    ctoks_max = len(plan.todo) * opts.max_tokens
    ctoks = int(len(plan.todo) * typical) if typical else ctoks_max
    family = opts.image_family()
    parts = [p for r in plan.todo for p in image_parts(r.messages)]
    images = {}
    if parts or opts.images_wanted():
        images = {
            "images_to_send": len(parts),
            "est_image_tokens": sum(image_tokens(p, family) for p in parts),
            "image_token_rule": RULES[family]
            + ("; detail auto counted as high (an upper bound)" if family == "openai" and
               any(p.get("detail") == "auto" for p in parts) else ""),
        }  # fmt: skip
    return {
        **plan.accounting(),
        "to_send": len(plan.todo),
        **images,
        "est_prompt_tokens": ptoks,
        "est_completion_tokens": ctoks,
        "completion_tokens_basis": "mean of earlier replies" if typical else "max_tokens (upper bound)",
        "est_cost_usd": price.cost(ptoks, ctoks),
        "max_cost_usd": price.cost(ptoks, ctoks_max),
        "price_known": price.known,
        "notes": plan.notes(),
    }


def generate(task: Task, paths: list[Path], corpus_dir: Path, opts: GenerateOptions, *, dry_run: bool = False,
             progress: Progress | None = None, warn: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run (or with ``dry_run`` estimate) one generation; returns its summary. ``warn`` hears,
    before any request is sent, of image ids the corpus lacks.

    With images (``opts.with_images``, or a task that asks for them) the model must take images
    and the images come from the corpus: an annotation whose image is missing or corrupt there
    is skipped and counted before anything is sent."""
    wants_images = opts.images_wanted(task)
    if wants_images:
        option = "--with-images" if opts.with_images else f"--task {task.name} (it sends images)"
        require_images(opts.model, opts.backend, opts.api_base, option)
    loaded = load_annotations(task, paths, opts.limit)
    anns = loaded.annotations
    if not anns:
        why = f" ({'; '.join(loaded.lines())})" if loaded.records else ""
        raise SyphusError(
            f"{', '.join(str(p) for p in paths)}: no annotations found for task {task.name}{why}"
        )
    has_corpus = (Path(corpus_dir) / DB_NAME).exists()
    if wants_images and not has_corpus:
        raise SyphusError(
            f"{corpus_dir}: no corpus, and the images sent with --with-images are read from it",
            hint=f"import them first: syphus import images DIR --corpus {corpus_dir}",
        )
    if dry_run and not has_corpus:
        reqs, shared = build_requests(task, anns, opts.model, opts.params())
        plan = make_plan(reqs, shared, None, loaded, check_images(anns, None))
        _warn_images(plan, task, corpus_dir, warn)
        return estimate(plan, opts, None)
    with Corpus(corpus_dir) as corpus:
        source = opts.image_source(corpus) if wants_images else None
        reqs, shared = plan_requests(task, loaded, opts, source)
        # with images, the annotations whose images are missing are counted as skipped instead
        images = None if source is not None else check_images(loaded.annotations, corpus)
        if dry_run:
            log = RequestLog(corpus)
            try:
                plan = make_plan(reqs, shared, log, loaded, images)
                _warn_images(plan, task, corpus_dir, warn)
                return estimate(plan, opts, log)
            finally:
                log.close()
        gen = Generation(task, corpus, opts, progress, images=source, warn=warn)
        plan = gen.plan(reqs, shared, loaded)
        plan.images = images
        _warn_images(plan, task, corpus_dir, warn)
        return gen.run(plan, _config_of(task, paths, opts))


def plan_requests(
    task: Task, loaded: Loaded, opts: GenerateOptions, source: ImageSource | None
) -> tuple[list[ChatRequest], int]:
    """The requests for the loaded annotations; with an image source, those whose images cannot
    be sent are first moved to ``loaded``'s skipped notes (an error if none is left)."""
    if source is not None:
        if not keep_with_images(loaded.annotations, source, loaded):
            raise SyphusError(f"no annotation has all its images in {source.corpus.path}: {'; '.join(loaded.lines())}",
                              hint="import the images first (syphus import images DIR --corpus C)")  # fmt: skip
    return build_requests(task, loaded.annotations, opts.model, opts.params(), source, opts.image_family())


def _warn_images(plan: Plan, task: Task, corpus_dir: Path, warn: Callable[[str], None] | None) -> None:
    # said before the first request, so a wrong id pattern costs nothing
    msg = plan.images.warning(task, Path(corpus_dir)) if plan.images else None
    if msg and warn is not None:
        warn(msg)


# -- reparse -------------------------------------------------------------------------------------


def reparse(task: Task, paths: list[Path], corpus_dir: Path) -> dict[str, Any]:
    """Re-run the task's current parser over every stored reply to these annotations. No requests."""
    anns = {}
    same_prompt: dict[str, list[Annotation]] = {}  # annotations that shared one request
    for ann in load_annotations(task, paths, None).annotations:
        anns[(task_of(task, ann), ann.id)] = ann
        same_prompt.setdefault(request_key("", task.messages(ann), {}), []).append(ann)
    with Corpus(corpus_dir, create=False) as corpus:
        log = RequestLog(corpus)
        run_id = corpus.start_run("reparse", {"task": task.name, "annotations": [str(p) for p in paths]})
        rows = corpus.con.execute(
            "SELECT key, task, source_id, raw, finish_reason FROM requests WHERE status = 'done' "
            "AND task IN (SELECT unnest(?::VARCHAR[]))",
            [sorted({t for t, _ in anns})],
        ).fetchall()
        matched = [(r, anns[(r[1], r[2])]) for r in rows if (r[1], r[2]) in anns]
        pairs = quarantined = 0
        before = corpus.con.execute(
            "SELECT count(*) FROM instructions WHERE task IN (SELECT unnest(?::VARCHAR[]))",
            [sorted({t for t, _ in anns})],
        ).fetchone()[0]
        corpus.forget_parsed([r[0] for r, _ in matched])
        for (key, _t, _s, raw, finish), ann in matched:
            group = same_prompt[request_key("", task.messages(ann), {})]
            ing = make_ingest(task, ann, key, raw or "", finish, run_id, [a for a in group if a is not ann])
            pairs += len(ing.rows)
            quarantined += len(ing.quarantine)
            log.add_ingest(key, ing)
        log.close()
        summary = {"status": "done", "replies": len(matched), "pairs_before": before, "pairs": pairs,
                   "quarantined": quarantined, "requests_sent": 0}  # fmt: skip
        corpus.finish_run(run_id, "done", summary)
    return summary


# -- preview -------------------------------------------------------------------------------------


@dataclass
class PreviewItem:
    """One annotation of a preview: its pairs as parsed now, or why there are none."""

    annotation: Annotation
    pairs: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    raw: str | None = None


def preview_requests(task: Task, paths: list[Path], n: int, opts: GenerateOptions) -> list[ChatRequest]:
    """The requests of the first ``n`` annotations (one per distinct prompt), for showing the prompt."""
    anns = load_annotations(task, paths, n).annotations
    if not anns:
        raise SyphusError(f"{', '.join(str(p) for p in paths)}: no annotations found for task {task.name}")
    return build_requests(task, anns, opts.model, opts.params())[0]


def preview(task: Task, reqs: list[ChatRequest], opts: GenerateOptions) -> list[PreviewItem]:
    """Send the requests and parse each reply, without a corpus; items in the requests' order."""
    results: dict[str, PreviewItem] = {}

    def on_outcome(o: Outcome) -> None:
        ann = o.req.ctx
        item = PreviewItem(ann, error=o.error)
        if o.completion is not None:
            item.raw = o.completion.text
            ing = make_ingest(task, ann, o.req.key, o.completion.text, o.completion.finish_reason, "preview")
            item.pairs = [{"instruction": r.instruction, "answer": r.answer} for r in ing.rows]
            if ing.quarantine:
                item.error = ing.quarantine[0]["reason"]
        results[o.req.key] = item

    async def go() -> None:
        backend = open_backend(opts)
        try:
            await Scheduler(backend, scheduler_config(opts), price_of(opts.model), on_outcome).run(reqs)
        finally:
            await backend.aclose()

    asyncio.run(go())
    return [results[r.key] for r in reqs if r.key in results]


__all__ = ["GenerateOptions", "generate", "reparse", "preview", "resolve_task", "Completion", "DEFAULT_MODEL"]
