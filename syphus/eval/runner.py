"""Run a model over benchmarks and write the results folder.

For each benchmark: read its samples from local files, build each prompt, generate the answers in
batches, score them with the benchmark's rule (and the judge where the rule needs one), and write

    OUT/<model-slug>/<bench>.json           BenchResult.to_json() + model, config, created_at
    OUT/<model-slug>/<bench>.samples.jsonl  one verdict a line + question, options, images
    OUT/images/<bench>/<sha256>.<ext>       each image once, named by content (shared by models)

Answers are journaled as they come (``OUT/<model-slug>/.<bench>.predictions.jsonl``, with the
model, split, limit, prompt style and token limit in its first line): a run stopped at any point
resumes with the samples not yet answered, and a rerun with nothing changed only rescores.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from schemas.errors import SyphusError
from schemas.progress import Progress, no_progress
from syphus.eval.benchmarks import Benchmark, get_benchmark
from syphus.eval.models import EvalModel, slug
from syphus.eval.samples import BenchResult, Judge, Sample

DEFAULT_MAX_NEW_TOKENS = 32
# Samples handed to the model per call: several batches, so it can group prompts by length.
CHUNK_BATCHES = 8


def resolve_benchmark(name: str) -> Benchmark:
    """A built-in benchmark by name, or a user's own as ``package.module:OBJECT``."""
    if ":" in name:
        mod_name, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise SyphusError(f"benchmark {name}: cannot import ({e})") from e
    return get_benchmark(name)


def bench_name(bench: Benchmark) -> str:
    return str(getattr(bench, "name", None) or type(bench).__name__)


def bench_path(data: Path, bench: Benchmark) -> Path:
    """Where ``--data DIR`` keeps a benchmark's files: ``DIR/<name>/`` (DIR itself when it is not a
    folder of benchmarks but one benchmark's own file)."""
    data = Path(data)
    if not data.exists():
        raise SyphusError(f"--data {data}: benchmark data folder not found")
    name = short = bench_name(bench)
    for candidate in (data / name, data / name.lower()):
        if candidate.exists():
            return candidate
    if data.is_file():
        return data
    have = sorted(p.name for p in data.iterdir() if not p.name.startswith("."))
    raise SyphusError(
        f"--data {data}: no folder {short}/ for benchmark {name} (found: {', '.join(have) or 'nothing'}); "
        "put each benchmark's distributed files under DATA/<benchmark>/"
    )


@dataclass
class BenchRun:
    """One benchmark to run: the benchmark, where its files are, and its options (``split``,
    ``limit``, ``prompt`` style, ``max_new_tokens``)."""

    bench: Benchmark
    path: Path
    options: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def _image_ext(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"GIF8":
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def _save_images(out: Path, bench: str, sample: Sample, model_dir: Path) -> list[str]:
    """Each image of the sample once under OUT/images/<bench>/, named by content; returns the paths
    relative to the model's results folder (what a samples line holds)."""
    folder = out / "images" / bench
    paths = []
    for data in sample.images:
        name = f"{hashlib.sha256(data).hexdigest()}.{_image_ext(data)}"
        target = folder / name
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{name}.{os.getpid()}.partial")
            tmp.write_bytes(data)
            tmp.replace(target)
        paths.append(os.path.relpath(target, model_dir))
    return paths


class PredictionJournal:
    """Answers appended as they come, behind a header naming what produced them. A different header
    (another model, split, limit, prompt or token limit) starts the journal over."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.header = json.loads(json.dumps(header, sort_keys=True, default=str))
        self.done: dict[str, str] = {}
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            try:
                same = lines and json.loads(lines[0]) == {"journal": self.header}
            except ValueError:
                same = False
            if same:
                for line in lines[1:]:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        break  # the line a kill cut short; the rest is asked again
                    self.done[str(rec["id"])] = rec["prediction"]
        if not self.done:
            path.write_text(json.dumps({"journal": self.header}) + "\n", encoding="utf-8")
        else:  # rewrite without a torn last line, so appends start on a fresh line
            rows = [json.dumps({"journal": self.header})]
            rows += [json.dumps({"id": k, "prediction": v}, ensure_ascii=False) for k, v in self.done.items()]
            path.write_text("\n".join(rows) + "\n", encoding="utf-8")

    def add(self, answers: dict[str, str]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            for k, v in answers.items():
                f.write(json.dumps({"id": k, "prediction": v}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done.update(answers)


def read_samples(run: BenchRun) -> list[Sample]:
    name = bench_name(run.bench)
    opts = run.options
    samples = list(run.bench.read(run.path, split=opts.get("split"), limit=opts.get("limit")))
    if not samples:
        split = f" (split {opts['split']})" if opts.get("split") else ""
        raise SyphusError(f"{run.path}: no samples of benchmark {name}{split}")
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise SyphusError(f"{run.path}: benchmark {name} has sample id {s.id!r} twice")
        seen.add(s.id)
    return samples


def predict(
    model: EvalModel,
    samples: list[Sample],
    prompts: list[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    journal: PredictionJournal | None,
    progress: Progress,
) -> dict[str, str]:
    """The model's answer to every sample, in chunks of several batches; journaled per chunk."""
    done = dict(journal.done) if journal is not None else {}
    progress(len([s for s in samples if s.id in done]))
    todo = [i for i, s in enumerate(samples) if s.id not in done]
    step = max(1, int(getattr(model, "batch_size", batch_size) or batch_size)) * CHUNK_BATCHES
    for start in range(0, len(todo), step):
        idx = todo[start : start + step]
        answers = model.generate(
            [(prompts[i], samples[i].images) for i in idx], max_new_tokens=max_new_tokens
        )
        if len(answers) != len(idx):
            raise RuntimeError(f"{model.name} answered {len(answers)} of {len(idx)} prompts")
        got = {samples[i].id: a for i, a in zip(idx, answers, strict=True)}
        if journal is not None:
            journal.add(got)
        done.update(got)
        progress(len(idx))
    return {s.id: done[s.id] for s in samples}


def evaluate(
    model: EvalModel,
    benches: list[tuple[Benchmark, Path, dict]] | list[BenchRun],
    *,
    out: Path,
    batch_size: int,
    judge: Judge | None,
    progress: Progress | None = None,
    model_slug: str | None = None,
) -> list[BenchResult]:
    """Evaluate ``model`` on each benchmark and write the results folder (see the module doc).

    ``model_slug`` names the model's results folder (default: from the model's name)."""
    progress = progress or no_progress
    out = Path(out)
    model_dir = out / (model_slug or slug(model.name))
    model_dir.mkdir(parents=True, exist_ok=True)
    runs = [b if isinstance(b, BenchRun) else BenchRun(*b) for b in benches]
    describe = getattr(model, "describe", None)
    model_info = describe() if describe is not None else {"name": model.name}
    results = []
    for run in runs:
        name = bench_name(run.bench)
        samples = read_samples(run)
        style = run.options.get("prompt")
        max_new = int(
            run.options.get("max_new_tokens") or getattr(run.bench, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        )
        prompts = [run.bench.prompt(s, style) for s in samples]
        config = {
            "bench": name,
            "data": str(run.path),
            "split": run.options.get("split"),
            "limit": run.options.get("limit"),
            "prompt": style,
            "max_new_tokens": max_new,
            "batch_size": getattr(model, "batch_size", None) or batch_size,  # the model's own, if it has one
            "model": model_info,
        }
        header = {k: v for k, v in config.items() if k != "batch_size"}  # answers do not depend on it
        journal = PredictionJournal(model_dir / f".{name}.predictions.jsonl", header)
        progress(0, total=len(samples), label=f"{model.name}: {name}")
        predictions = predict(
            model,
            samples,
            prompts,
            batch_size=batch_size,
            max_new_tokens=max_new,
            journal=journal,
            progress=progress,
        )
        begin = getattr(judge, "begin", None)
        if callable(begin):
            begin()
        result = run.bench.score(samples, predictions, judge=judge)
        note = getattr(judge, "note", None)
        if callable(note) and note():
            result.notes.append(note())
        errors = getattr(model, "errors", None)
        if errors:
            result.notes.append(f"{len(errors)} requests to the model got no reply (first: {errors[0]})")
            errors.clear()
        _write_result(out, model_dir, name, model.name, config, result, samples, prompts)
        results.append(result)
    return results


def _write_result(
    out: Path,
    model_dir: Path,
    name: str,
    model_name: str,
    config: dict,
    result: BenchResult,
    samples: list[Sample],
    prompts: list[str],
) -> None:
    by_id = {s.id: (s, p) for s, p in zip(samples, prompts, strict=True)}
    tmp = model_dir / f".{name}.samples.jsonl.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        for v in result.verdicts:
            s, prompt = by_id.get(v.sample_id, (None, None))
            row = v.to_json()
            if s is not None:
                row.update(
                    question=s.question,
                    prompt=prompt,
                    options=s.options,
                    images=_save_images(out, name, s, model_dir),
                )
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(model_dir / f"{name}.samples.jsonl")
    data = result.to_json()
    data.update(model=model_name, config=config, created_at=_now())
    _write_json(model_dir / f"{name}.json", data)


def read_results(folder: Path) -> dict[str, BenchResult]:
    """The results a model's folder holds (``OUT/<model-slug>``), by benchmark; a single
    ``<bench>.json`` file is read as a folder of one."""
    folder = Path(folder)
    if not folder.exists():
        raise SyphusError(f"{folder}: results not found")
    files = [folder] if folder.is_file() else sorted(folder.glob("*.json"))
    out = {}
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise SyphusError(f"{f}: not a results file written by `syphus eval` ({e})") from e
        r = BenchResult.from_json(data, where=str(f))
        out[r.bench] = r
    if not out:
        raise SyphusError(
            f"{folder}: no <bench>.json results in this folder; give OUT/<model> of `syphus eval`"
        )
    return out


@dataclass
class ModelResults:
    model: str
    folder: Path  # OUT/<model-slug>
    results: list[BenchResult]
    notes: list[str] = field(default_factory=list)


def run_eval_file(cfg, base: Path, *, progress: Progress | None = None) -> list[ModelResults]:
    """Run an evaluation config (``schemas.eval.EvalFile``; paths relative to ``base``): every model
    on every dataset, into ``cfg.out``. Endpoint models and the judge share one request cache
    (``OUT/.requests``) and one ``max_cost``."""
    from schemas.eval import resolve
    from syphus.engine.pipeline import GenerateOptions
    from syphus.eval.models import AskJudge, Budget, resolve_model

    if not cfg.out:
        raise SyphusError("no results folder: give --out (or `out:` in the config)")
    out = resolve(base, cfg.out)
    data = resolve(base, cfg.data)
    runs = []
    for d in cfg.datasets:  # every benchmark and its files are checked before any model loads
        bench = resolve_benchmark(d.name)
        if d.path is not None:
            path = resolve(base, d.path)
            if not path.exists():
                raise SyphusError(f"dataset {d.name}: path {path} not found")
        elif data is None:
            raise SyphusError(
                f"dataset {d.name}: no data folder; give --data DIR (or `path:` for the dataset)"
            )
        else:
            path = bench_path(data, bench)
        options = d.model_dump(exclude={"name", "path"})
        options["limit"] = d.limit or cfg.limit
        runs.append(BenchRun(bench, path, options))
    out.mkdir(parents=True, exist_ok=True)
    store = out / ".requests"
    budget = Budget(cfg.max_cost)

    def options_for(entry):
        def make(model: str) -> GenerateOptions:
            return GenerateOptions(
                model=model,
                api_base=entry.api_base,
                backend=entry.backend,
                concurrency=entry.concurrency or cfg.concurrency,
                max_cost=cfg.max_cost,
                temperature=0.0,
            )

        return make

    judge = None
    if cfg.judge:
        opts = GenerateOptions(
            model=cfg.judge, api_base=cfg.judge_api_base, concurrency=cfg.concurrency, max_cost=cfg.max_cost
        )
        judge = AskJudge(cfg.judge, opts, store=store, budget=budget)
    done = []
    for entry in cfg.models:
        target = entry.model_path or entry.name
        if entry.model_path is not None:
            target = str(resolve(base, entry.model_path))
        elif Path(base / entry.name).exists() and not Path(entry.name).is_absolute():
            target = str(base / entry.name)
        model = resolve_model(
            target,
            batch_size=entry.batch_size or cfg.batch_size,
            opts_for=options_for(entry),
            store=store,
            budget=budget,
            prompt_format=entry.prompt_format,
            name=entry.name,
        )
        folder_slug = slug(entry.name if entry.model_path else target)
        results = evaluate(
            model,
            runs,
            out=out,
            batch_size=entry.batch_size or cfg.batch_size,
            judge=judge,
            progress=progress,
            model_slug=folder_slug,
        )
        done.append(ModelResults(entry.name, out / folder_slug, results))
    return done


def training_benches(settings, base: Path) -> list[BenchRun]:
    """The benchmarks of a training config's ``eval:`` block (paths relative to ``base``), checked
    before the first step so that a wrong name or folder fails the run at once."""
    from schemas.eval import resolve

    data = resolve(base, settings.data)
    runs = []
    for d in settings.datasets:
        bench = resolve_benchmark(d.name)
        path = resolve(base, d.path) if d.path else bench_path(data, bench)
        if not path.exists():
            raise SyphusError(f"training config field 'eval': dataset {d.name}: {path} not found")
        options = d.model_dump(exclude={"name", "path"})
        options["limit"] = d.limit or settings.limit
        run = BenchRun(bench, path, options)
        read_samples(run)
        runs.append(run)
    return runs


def evaluate_training_step(
    model, tokenizer, image_processor, runs: list[BenchRun], *, batch_size: int, run_dir: Path, step: int,
    prompt_format: str = "otter",
) -> dict[str, float]:  # fmt: skip
    """Score the model being trained (in eval mode, then back to train mode) into
    ``RUN/eval/step-NNNNNN/``; returns the overall metrics as ``{"eval/<bench>/<metric>": value}``."""
    from syphus.eval.models import OtterEvalModel
    from trainer.chat import Chat

    was_training = model.training
    try:
        chat = Chat(model, tokenizer, image_processor, prompt_format)  # puts the model in eval mode
        otter = OtterEvalModel(chat=chat, batch_size=batch_size, name=f"step {step}")
        results = evaluate(
            otter,
            runs,
            out=run_dir / "eval",
            batch_size=batch_size,
            judge=None,
            model_slug=f"step-{step:06d}",
        )
    finally:
        model.train(was_training)
    row = {}
    for r in results:
        for m in r.metrics:
            if m.category is None:
                row[f"eval/{r.bench}/{m.name}"] = m.value
    return row
