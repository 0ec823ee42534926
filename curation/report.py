"""``syphus report``: one self-contained HTML page that shows what a corpus holds.

Per task: samples (one per source annotation) with image thumbnails, the annotation, the
generated pairs and the in-context examples chosen for them; then the quarantined outputs with
their reasons, per-run counts, tokens, cost and request rate, and, for a training output folder,
its loss curve and eval samples. Images are inlined as small base64 JPEG thumbnails, so the file
can be mailed or opened anywhere without the corpus next to it.

The queries are the corpus's own (``curation/queries.py``); ``runs.summary`` is whatever each
command recorded, so it is read leniently.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.store import Corpus, now
from schemas.errors import SyphusError
from schemas.progress import Progress

THUMB_PX = 160
SMALL_THUMB_PX = 72
RAW_CHARS = 600


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


@dataclass
class ReportSummary:
    out: Path
    tasks: dict[str, int] = field(default_factory=dict)  # task -> samples shown
    pairs: int = 0
    quarantined: int = 0
    runs: int = 0
    training: bool = False
    eval_results: int = 0  # (model, benchmark) results shown
    eval_samples: int = 0  # their sample rows
    nbytes: int = 0

    @property
    def samples(self) -> int:
        return sum(self.tasks.values())


# -- reading the corpus -------------------------------------------------------------------------------


class CorpusReader:
    """The corpus queries of one report (all runs or one), plus a cache of thumbnails."""

    def __init__(self, corpus: Corpus, run_id: str | None):
        self.corpus = corpus
        self.run_id = run_id
        self._thumbs: dict[tuple[str, int], str | None] = {}
        if run_id is not None and not corpus.has_run(run_id):
            raise SyphusError(f"{corpus.path}: no run '{run_id}' in this corpus (see the runs table)")

    def tasks(self) -> list[tuple[str, int]]:
        return self.corpus.task_counts(self.run_id)

    def sample_keys(self, task: str, limit: int) -> list[str]:
        return self.corpus.sample_keys(task, limit, self.run_id)

    def count_samples(self, task: str) -> int:
        return self.corpus.count_samples(task, self.run_id)

    def pairs_of(self, task: str, key: str) -> list[dict[str, Any]]:
        return self.corpus.sample_pairs(task, key, self.run_id)

    def context_of(self, ins_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        return self.corpus.context_details(ins_ids, self.run_id)

    def scores_of(self, ins_ids: list[str]) -> dict[str, dict[str, Any]]:
        return self.corpus.scores_of(ins_ids)

    def score_histograms(self) -> dict[str, dict[str, Any]]:
        return self.corpus.score_histograms(self.run_id)

    def quarantine(self, limit: int) -> tuple[int, list[dict[str, Any]]]:
        return self.corpus.quarantined(limit, self.run_id)

    def runs(self) -> list[dict[str, Any]]:
        return self.corpus.run_rows(self.run_id)

    def thumbnail(self, image_id: str, px: int = THUMB_PX) -> str | None:
        """A data: URI of a small JPEG of the image, or None when the image is missing or unreadable."""
        key = (image_id, px)
        if key not in self._thumbs:
            try:
                self._thumbs[key] = thumbnail_uri(self.corpus.get_image(image_id), px)
            except (SyphusError, OSError, ValueError):
                self._thumbs[key] = None
        return self._thumbs[key]


def thumbnail_uri(data: bytes, px: int) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (px, px))  # lets JPEG decode at a reduced scale
        im = im.convert("RGB")
        im.thumbnail((px, px))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=72)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# -- run summaries ------------------------------------------------------------------------------------


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def pick(flat: dict[str, Any], *names: str) -> float | None:
    """The first numeric value whose key (or last dotted part of it) is one of ``names``."""
    for name in names:
        for k, v in flat.items():
            if (
                (k == name or k.endswith("." + name))
                and isinstance(v, int | float)
                and not isinstance(v, bool)
            ):
                return float(v)
    return None


@dataclass
class RunFigures:
    requests: float | None
    tokens: float | None
    cost: float | None
    req_per_s: float | None
    seconds: float | None


def run_figures(run: dict[str, Any]) -> RunFigures:
    """Tokens, cost and request rate of one run: from the request log when it has the run,
    else from what the command recorded in ``runs.summary``."""
    try:
        summary = json.loads(run["summary"]) if run.get("summary") else {}
    except json.JSONDecodeError:
        summary = {}
    flat = flatten(summary)
    seconds = None
    if run.get("started_at") and run.get("finished_at"):
        seconds = (run["finished_at"] - run["started_at"]).total_seconds()
    req = run.get("requests")
    if req:
        n = float(req["n"])
        tokens = None
        if req.get("prompt_tokens") is not None or req.get("completion_tokens") is not None:
            tokens = float((req.get("prompt_tokens") or 0) + (req.get("completion_tokens") or 0))
        cost = float(req["cost"]) if req.get("cost") is not None else None
        span = None
        if req.get("t0") and req.get("t1"):
            span = (req["t1"] - req["t0"]).total_seconds()
        span = span if span and span > 0 else seconds
        rps = n / span if span and span > 0 else None
    else:
        n = pick(flat, "requests", "n_requests", "requests_done")
        tokens = pick(flat, "tokens", "total_tokens")
        if tokens is None:
            parts = [
                pick(flat, a, b)
                for a, b in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens"))
            ]
            tokens = sum(p for p in parts if p is not None) if any(p is not None for p in parts) else None
        cost = pick(flat, "cost", "cost_usd", "usd", "total_cost")
        rps = None
    if rps is None:
        rps = pick(flat, "req_per_s", "requests_per_s", "rps")
    return RunFigures(n, tokens, cost, rps, seconds)


# -- training output ---------------------------------------------------------------------------------


@dataclass
class TrainingFiles:
    root: Path
    loss_png: Path | None = None
    points: list[tuple[float, float]] = field(default_factory=list)  # (step, loss)
    points_source: Path | None = None
    eval_samples: list[dict[str, Any]] = field(default_factory=list)
    eval_source: Path | None = None
    problems: list[str] = field(default_factory=list)


def _files(root: Path, patterns: Iterable[str]) -> list[Path]:
    """Files matching ``patterns`` up to two folders down, outside ``eval/`` (the results folder of
    the training config's ``eval:`` block, read as evaluation results)."""
    found: list[Path] = []
    for pat in patterns:
        found += sorted(
            p
            for p in root.rglob(pat)
            if p.is_file() and len(parts := p.relative_to(root).parts) <= 3 and parts[0] != "eval"
        )
    return found


def read_training(root: Path) -> TrainingFiles:
    """Read whatever a training run left: a loss PNG, HF ``trainer_state.json``, JSONL metrics with
    a ``loss`` field, and eval samples (JSONL). Files that cannot be read are reported, not fatal."""
    if not root.is_dir():
        raise SyphusError(f"{root}: --train-dir is not a folder")
    t = TrainingFiles(root)
    pngs = _files(root, ["*loss*.png"])
    t.loss_png = pngs[0] if pngs else None
    for path in _files(root, ["trainer_state.json"]):
        try:
            hist = json.loads(path.read_text(encoding="utf-8")).get("log_history", [])
            pts = [(float(h["step"]), float(h["loss"])) for h in hist if "loss" in h and "step" in h]
        except (OSError, ValueError, AttributeError, TypeError) as e:
            t.problems.append(f"{path}: unreadable ({e})")
            continue
        if pts:
            t.points, t.points_source = pts, path
            break
    if not t.points:
        for path in _files(root, ["*.jsonl"]):
            if "eval" in path.name:
                continue
            pts = []
            for k, line in enumerate(_lines(path, t)):
                try:
                    rec = json.loads(line)
                except ValueError:
                    t.problems.append(f"{path}:{k + 1}: not JSON, skipped")  # e.g. a line still being written
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("loss"), int | float):
                    pts.append((float(rec.get("step", rec.get("global_step", k))), float(rec["loss"])))
            if pts:
                t.points, t.points_source = pts, path
                break
    for path in _files(root, ["eval_samples*.jsonl", "*eval*.jsonl"]):
        for k, line in enumerate(_lines(path, t)):
            try:
                rec = json.loads(line)
            except ValueError:
                t.problems.append(f"{path}:{k + 1}: not JSON, skipped")
                continue
            if isinstance(rec, dict):
                t.eval_samples.append(rec)
        if t.eval_samples:
            t.eval_source = path
            break
    return t


def _lines(path: Path, t: TrainingFiles) -> list[str]:
    try:
        return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        t.problems.append(f"{path}: unreadable ({e})")
        return []


def loss_svg(points: list[tuple[float, float]], w: int = 640, h: int = 240) -> str:
    """An inline SVG line chart of loss against step, with min/max labels on both axes."""
    pts = [(s, v) for s, v in points if math.isfinite(v)]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)
    ml, mr, mt, mb = 56, 12, 10, 28
    pw, ph = w - ml - mr, h - mt - mb

    def xy(s: float, v: float) -> str:
        return f"{ml + (s - x0) / (x1 - x0) * pw:.1f},{mt + (1 - (v - y0) / (y1 - y0)) * ph:.1f}"

    line = " ".join(xy(s, v) for s, v in pts)
    return (
        f'<svg class="loss" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="training loss">'
        f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="#1f5fbf" stroke-width="1.8" points="{line}"/>'
        f'<text x="{ml - 6}" y="{mt + 10}" text-anchor="end">{y1:.3g}</text>'
        f'<text x="{ml - 6}" y="{mt + ph}" text-anchor="end">{y0:.3g}</text>'
        f'<text x="{ml}" y="{h - 8}">step {x0:g}</text>'
        f'<text x="{ml + pw}" y="{h - 8}" text-anchor="end">step {x1:g}</text>'
        f'<text x="{ml + pw / 2}" y="{h - 8}" text-anchor="middle">loss ({len(pts)} points)</text></svg>'
    )


# -- HTML -------------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#f4f5f7}
header{background:#20324d;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85}main{padding:8px 24px 40px;max-width:1280px}
h2{margin:28px 0 8px;border-bottom:2px solid #20324d;padding-bottom:4px}h3{margin:6px 0}
nav a{margin-right:14px;color:#cfe0ff}
table{border-collapse:collapse;background:#fff;margin:6px 0}td,th{border:1px solid #dde;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sample{background:#fff;border:1px solid #d8dbe2;border-radius:8px;padding:12px;margin:12px 0;display:grid;
grid-template-columns:minmax(180px,340px) 1fr;gap:16px}
.thumbs{display:flex;flex-wrap:wrap;gap:6px;align-content:flex-start}.thumbs figure{margin:0}
.thumbs figcaption,.ctx figcaption{font-size:11px;color:#666;word-break:break-all}
img.thumb{border:1px solid #ccc;border-radius:4px;display:block}
.missing{display:inline-block;width:72px;height:54px;background:#eee;color:#999;font-size:11px;text-align:center;
line-height:54px;border-radius:4px}
.ann{background:#f7f8fa;border-left:3px solid #8aa4d6;padding:6px 8px;font-size:12px;
max-height:260px;overflow:auto;margin:6px 0;overflow-wrap:anywhere}.ann dt{font-weight:600;color:#20324d}
.ann dd{margin:0 0 4px 12px}.ann ul{margin:0;padding-left:16px}
.pair{border-top:1px solid #eee;padding:6px 0}.q{font-weight:600}.q::before{content:"Q: ";color:#20324d}
.a::before{content:"A: ";color:#2a7d3b;font-weight:600}.tr{margin-left:18px;color:#444}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:9px;background:#e3e8f2;margin-left:4px}
.flag{background:#fde2e1;color:#8a1c12}
.ctx{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0 2px 18px}.ctx figure{margin:0;width:150px;font-size:11px}
.ctx .score{font-weight:600;color:#20324d}.verdict{font-size:12px;margin-top:2px}
.verdict .score{font-weight:600;color:#fff;background:#20324d;border-radius:9px;padding:0 6px}
.hist{margin:4px 0}.hist text{font-size:10px;fill:#444}
tr.evalscore.overall td{font-weight:600}tr.evalscore.cat td:nth-child(4){padding-left:18px}
tr.evalrow.wrong td.verdict{color:#8a1c12;font-weight:600}tr.evalrow.right td.verdict{color:#2a7d3b}
td.pred{white-space:pre-wrap;max-width:360px;overflow-wrap:anywhere}ul.opts{margin:2px 0;padding-left:16px}
table.evalsamples img.thumb{min-width:64px;image-rendering:pixelated}
p.filter{background:#fff;border:1px solid #d8dbe2;border-radius:6px;padding:6px 10px;position:sticky;top:0}.note{color:#555}.raw{white-space:pre-wrap;font-size:12px;
max-width:560px;overflow-wrap:anywhere}
"""

# Counts the images that failed to decode, so an automated check (and a curious reader) can see it.
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img"), broken = 0;
  for (var i = 0; i < imgs.length; i++) { if (!imgs[i].complete || imgs[i].naturalWidth === 0) broken++; }
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-broken-images", String(broken));
});
"""


def img_tag(uri: str | None, alt: str, px: int) -> str:
    if uri is None:
        return f'<span class="missing" title="{esc(alt)}">no image</span>'
    return f'<img class="thumb" src="{uri}" alt="{esc(alt)}" style="max-width:{px}px;max-height:{px}px">'


def annotation_value_html(v: Any) -> str:
    """Lists of strings (captions, sentences) as bullet lists; everything else as compact JSON."""
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in v) + "</ul>"
    if isinstance(v, list) and v and all(isinstance(x, dict | list) for x in v):
        return "<ul>" + "".join(f"<li>{esc(json.dumps(x, ensure_ascii=False))}</li>" for x in v) + "</ul>"
    return esc(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))


def annotation_html(pairs: list[dict[str, Any]]) -> str:
    """The annotation a sample was generated from, as stored in ``instructions.extra``
    (under an ``annotation`` key when there is one, else the whole of ``extra``)."""
    for p in pairs:
        if not p.get("extra"):
            continue
        try:
            extra = json.loads(p["extra"])
        except json.JSONDecodeError:
            return f'<div class="ann">{esc(p["extra"])}</div>'
        ann = extra.get("annotation", extra) if isinstance(extra, dict) else extra
        if isinstance(ann, dict):
            items = "".join(f"<dt>{esc(k)}</dt><dd>{annotation_value_html(v)}</dd>" for k, v in ann.items())
            return f'<dl class="ann">{items}</dl>'
        return f'<div class="ann">{annotation_value_html(ann)}</div>'
    return '<p class="note">No annotation stored with these pairs.</p>'


def sample_html(reader: CorpusReader, task: str, key: str) -> tuple[str, int]:
    pairs = reader.pairs_of(task, key)
    image_ids: list[str] = []
    for p in pairs:
        for i in p["image_ids"] or []:
            if i not in image_ids:
                image_ids.append(i)
    shown = image_ids[:8]
    thumbs = "".join(
        f"<figure>{img_tag(reader.thumbnail(i), i, THUMB_PX)}<figcaption>{esc(i)}</figcaption></figure>"
        for i in shown
    )
    if len(image_ids) > len(shown):
        thumbs += f'<p class="note">+{len(image_ids) - len(shown)} more images</p>'
    context = reader.context_of([p["id"] for p in pairs])
    scores = reader.scores_of([p["id"] for p in pairs])
    originals = [p for p in pairs if not p["parent_id"] or p["parent_id"] not in {q["id"] for q in pairs}]
    translations: dict[str, list[dict[str, Any]]] = {}
    for p in pairs:
        if p not in originals:
            translations.setdefault(p["parent_id"], []).append(p)
    body = []
    for p in originals:
        flags = f'<span class="badge flag">{esc(p["flags"])}</span>' if p.get("flags") else ""
        body.append(
            f'<div class="pair" id="{esc(p["id"])}"><div class="q">{esc(p["instruction"])}'
            f'<span class="badge">{esc(p["lang"])}</span><span class="badge">{esc(p["id"])}</span>{flags}</div>'
            f'<div class="a">{esc(p["answer"])}</div>{score_html(scores.get(p["id"]))}'
        )
        for t in translations.get(p["id"], []):
            body.append(
                f'<div class="tr"><span class="badge">{esc(t["lang"])}</span> {esc(t["instruction"])}'
                f" &rarr; {esc(t['answer'])}</div>"
            )
        ctx = context.get(p["id"], [])
        if ctx:
            figs = []
            for c in ctx:
                first = (c["image_ids"] or [None])[0]
                pic = img_tag(
                    reader.thumbnail(first, SMALL_THUMB_PX) if first else None, first or "", SMALL_THUMB_PX
                )
                score = "" if c["score"] is None else f"{c['score']:.3f}"
                text = c["instruction"] if c["instruction"] is not None else "(not in this corpus)"
                figs.append(
                    f'<figure class="ctxitem">{pic}<figcaption><span class="score">#{c["rank"]} {score}</span> '
                    f"{esc(c['method'])}<br>{esc(text)}</figcaption></figure>"
                )
            body.append(f'<div class="note">In-context examples:</div><div class="ctx">{"".join(figs)}</div>')
        body.append("</div>")
    html_ = (
        f'<section class="sample" data-task="{esc(task)}" data-key="{esc(key)}">'
        f'<div class="thumbs">{thumbs or img_tag(None, "", THUMB_PX)}</div>'
        f"<div><h3>{esc(task)} &middot; {esc(key)}</h3>{annotation_html(pairs)}"
        f'<div class="note">{len(pairs)} pair(s)</div>{"".join(body)}</div></section>'
    )
    return html_, len(pairs)


def score_html(v: dict[str, Any] | None) -> str:
    """A pair's latest verdict: score out of the scale, the judge and its reason."""
    if not v:
        return ""
    return (
        f'<div class="verdict"><span class="score">{v["score"]:g}/{v["scale_max"]:g}</span> '
        f'<span class="note">{esc(v["judge_model"])} &middot; rubric {esc(v["rubric_sha256"][:12])}</span> '
        f'<span class="reason">{esc(v["reason"])}</span></div>'
    )


def histogram_svg(task: str, h: dict[str, Any], w: int = 420, bar_h: int = 90) -> str:
    """An inline SVG bar chart of a task's scores: one bar per score value on the scale."""
    scale = int(h["scale_max"]) if h["scale_max"] else max(int(b) for b in h["bins"])
    lo = min(1, int(min(h["bins"])))
    values = list(range(lo, scale + 1))
    top = max(h["bins"].values())
    bw = (w - 20) / len(values)
    bars = []
    for k, v in enumerate(values):
        n = h["bins"].get(float(v), 0)
        hh = bar_h * n / top if top else 0
        x = 10 + k * bw
        bars.append(
            f'<rect x="{x + 1:.1f}" y="{10 + bar_h - hh:.1f}" width="{bw - 2:.1f}" height="{hh:.1f}" fill="#1f5fbf">'
            f"<title>score {v}: {n}</title></rect>"
            f'<text x="{x + bw / 2:.1f}" y="{bar_h + 24}" text-anchor="middle">{v}</text>'
            + (
                f'<text x="{x + bw / 2:.1f}" y="{8 + bar_h - hh:.1f}" text-anchor="middle">{n}</text>'
                if n
                else ""
            )
        )
    n_scored = sum(h["bins"].values())
    pending = f", {h['unscored']:,} not yet" if h["unscored"] else ""
    return (
        f'<figure class="hist" data-task="{esc(task)}" data-scored="{n_scored}"><svg width="{w}" height="{bar_h + 30}" '
        f'role="img" aria-label="scores of {esc(task)}">{"".join(bars)}</svg>'
        f'<figcaption class="note">Judge scores: {n_scored:,} pair(s) scored{pending}.</figcaption></figure>'
    )


def fmt_num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "&ndash;"
    return f"{v:,.{digits}f}"


def runs_html(reader: CorpusReader) -> tuple[str, int]:
    runs = reader.runs()
    if not runs:
        return '<p class="note">No runs recorded.</p>', 0
    rows = []
    for r in runs:
        f = run_figures(r)
        counts = ", ".join(f"{k}: {v:,}" for k, v in r["counts"].items()) or "&ndash;"
        dur = fmt_num(f.seconds, 1) if f.seconds is not None else "&ndash;"
        summary = r.get("summary") or ""
        details = (
            f"<details><summary>summary</summary><div class='raw'>{esc(summary)}</div></details>"
            if summary not in ("", "{}")
            else ""
        )
        cost = f"${f.cost:,.4f}" if f.cost is not None else "&ndash;"
        rows.append(
            f"<tr><td>{esc(r['id'])}<br><span class='note'>{esc(r['command'])}</span></td><td>{esc(r['status'])}</td>"
            f"<td>{esc(r['started_at'].strftime('%Y-%m-%d %H:%M:%S') if r['started_at'] else '')}</td><td class='num'>{dur}</td><td>{counts}</td>"
            f"<td class='num'>{fmt_num(f.requests)}</td><td class='num'>{fmt_num(f.tokens)}</td>"
            f"<td class='num'>{cost}</td><td class='num'>{fmt_num(f.req_per_s, 2)}</td><td>{details}</td></tr>"
        )
    head = (
        "<tr><th>run</th><th>status</th><th>started (UTC)</th><th>seconds</th><th>counts</th><th>requests</th>"
        "<th>tokens</th><th>cost</th><th>req/s</th><th></th></tr>"
    )
    return f"<table class='runs'>{head}{''.join(rows)}</table>", len(runs)


def quarantine_html(reader: CorpusReader, limit: int) -> tuple[str, int]:
    total, rows = reader.quarantine(limit)
    if not total:
        return '<p class="note">Nothing was quarantined.</p>', 0
    trs = []
    for q in rows:
        raw = q["raw"] or ""
        short = raw if len(raw) <= RAW_CHARS else raw[:RAW_CHARS] + f"... (+{len(raw) - RAW_CHARS} chars)"
        raw_cell = (
            f"<details><summary>raw output</summary><div class='raw'>{esc(short)}</div></details>"
            if raw
            else ""
        )
        trs.append(
            f"<tr class='quarantined'><td>{esc(q['task'] or '')}</td><td>{esc(q['stage'])}</td>"
            f"<td>{esc(q['record_id'] or '')}<br><span class='note'>{esc(q['source'] or '')}</span></td>"
            f"<td>{esc(q['reason'])}</td><td>{raw_cell}</td><td>{esc(q['run_id'] or '')}</td></tr>"
        )
    more = f'<p class="note">Showing {len(rows)} of {total:,}.</p>' if total > len(rows) else ""
    head = "<tr><th>task</th><th>stage</th><th>record</th><th>reason</th><th>output</th><th>run</th></tr>"
    return f"<table class='quarantine'>{head}{''.join(trs)}</table>{more}", total


def training_html(t: TrainingFiles, reader: CorpusReader | None, limit: int) -> str:
    parts = [f'<p class="note">Training folder: {esc(t.root)}</p>']
    if t.loss_png is not None:
        parts.append(
            f'<figure><img class="loss" src="{png_uri(t.loss_png.read_bytes())}" alt="loss curve" '
            f'style="max-width:720px"><figcaption class="note">{esc(t.loss_png.name)}</figcaption></figure>'
        )
    if t.points:
        last = t.points[-1][1]
        parts.append(
            f"{loss_svg(t.points)}<p class='note'>From {esc(t.points_source)}: first loss {t.points[0][1]:.4f}, "
            f"last {last:.4f}, min {min(v for _, v in t.points):.4f}.</p>"
        )
    if t.loss_png is None and not t.points:
        parts.append(
            '<p class="note">No loss curve found (looked for *loss*.png, trainer_state.json and JSONL files with a '
            '"loss" field).</p>'
        )
    if t.eval_samples:
        keys: list[str] = []
        for rec in t.eval_samples[:limit]:
            for k in rec:
                if k not in keys and k not in ("image", "images", "image_ids", "image_id"):
                    keys.append(k)
        trs = []
        for rec in t.eval_samples[:limit]:
            ids = rec.get("image_ids") or ([rec["image_id"]] if rec.get("image_id") else [])
            ids = ids if isinstance(ids, list) else [ids]
            pics = "".join(
                img_tag(reader.thumbnail(str(i), SMALL_THUMB_PX) if reader else None, str(i), SMALL_THUMB_PX)
                for i in ids[:4]
            )
            cells = "".join(f"<td>{esc(rec.get(k, ''))}</td>" for k in keys)
            trs.append(f"<tr class='evalsample'><td>{pics}</td>{cells}</tr>")
        head = "<tr><th>images</th>" + "".join(f"<th>{esc(k)}</th>" for k in keys) + "</tr>"
        parts.append(
            f"<h3>Eval samples</h3><p class='note'>From {esc(t.eval_source)} "
            f"({len(t.eval_samples)} in the file, showing {min(limit, len(t.eval_samples))}).</p>"
            f"<table>{head}{''.join(trs)}</table>"
        )
    else:
        parts.append('<p class="note">No eval samples found (looked for *eval*.jsonl).</p>')
    for p in t.problems:
        parts.append(f'<p class="note">Skipped: {esc(p)}</p>')
    return "".join(parts)


# -- evaluation results (`syphus eval` folders) ------------------------------------------------------

EVAL_THUMB_PX = 96
RESULTS_SKIP = {"images"}  # OUT/images/<bench>/ holds the images the samples name

if TYPE_CHECKING:
    from syphus.eval.samples import BenchResult, Verdict


@dataclass
class EvalSample:
    """One line of ``<bench>.samples.jsonl``: the verdict with the question and its images."""

    verdict: Verdict
    question: str | None
    options: dict[str, str]
    images: list[Path | None]  # None: a path outside the results folder, never read


@dataclass
class EvalModelResults:
    """One model's folder of a results folder (``OUT/<model-slug>``)."""

    label: str
    folder: Path
    model: str
    data: dict[str, str]  # bench -> the data it was read from (from the result's config)
    results: dict[str, BenchResult]
    samples: dict[str, list[EvalSample]]  # bench -> samples (the result's verdicts without a samples file)
    show_samples: bool = True  # False: only its scores (a training run's earlier steps)


def _model_folders(root: Path) -> list[Path]:
    """The model folders of a results folder (or the folder itself when it is one)."""
    if not root.is_dir():
        raise SyphusError(f"{root}: --eval is not a folder (give the OUT of `syphus eval`)")
    if any(p.is_file() and not p.name.startswith(".") for p in root.glob("*.json")):
        return [root]
    found = sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name not in RESULTS_SKIP and any(d.glob("*.json"))
    )
    if not found:
        raise SyphusError(f"{root}: no results of `syphus eval` here (expected OUT/<model>/<bench>.json)")
    return found


def _sample_line(path: Path, k: int, line: str, images_root: Path) -> EvalSample:
    from syphus.eval.samples import Verdict

    where = f"{path}:{k}"
    try:
        rec = json.loads(line)
    except ValueError as e:
        raise SyphusError(f"{where}: not JSON ({e}); was it written by `syphus eval`?") from e
    if not isinstance(rec, dict):
        raise SyphusError(f"{where}: expected a JSON object, found {type(rec).__name__}")
    try:
        verdict = Verdict.from_json(rec)
    except KeyError as e:
        raise SyphusError(f"{where}: missing field {e.args[0]!r}; was it written by `syphus eval`?") from e
    except (TypeError, ValueError) as e:
        raise SyphusError(f"{where}: malformed field ({e})") from e
    images: list[Path | None] = []
    for p in rec.get("images") or []:
        full = (path.parent / str(p)).resolve()
        # only images under OUT/images, where `syphus eval` puts them: a results folder someone
        # handed over cannot pull other files of this machine into the page
        images.append(full if full.is_relative_to(images_root) else None)
    options = rec.get("options") if isinstance(rec.get("options"), dict) else {}
    question = rec.get("question")
    return EvalSample(verdict, None if question is None else str(question), options, images)


def read_eval_results(root: str | Path, *, label: str | None = None) -> list[EvalModelResults]:
    """Every model's results under a ``syphus eval`` results folder, with their per-sample lines.
    A results file with bad JSON or a missing field is an error naming the file (and line)."""
    from syphus.eval.runner import read_results

    root = Path(root)
    out = []
    for folder in _model_folders(root):
        results = read_results(folder)
        images_root = (folder.parent / "images").resolve()
        model, data, samples = folder.name, {}, {}
        for bench, result in results.items():
            meta_path = folder / f"{bench}.json"
            if meta_path.is_file():
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                model = str(meta.get("model") or model)
                cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
                if cfg.get("data"):
                    data[bench] = str(cfg["data"])
            lines_path = folder / f"{bench}.samples.jsonl"
            if lines_path.is_file():
                text = lines_path.read_text(encoding="utf-8")
                samples[bench] = [
                    _sample_line(lines_path, k, line, images_root)
                    for k, line in enumerate(text.splitlines(), 1)
                    if line.strip()
                ]
            else:
                samples[bench] = [EvalSample(v, None, {}, []) for v in result.verdicts]
        name = folder.name if folder != root else root.name
        out.append(
            EvalModelResults(
                f"{label or root.name}/{name}" if folder != root else (label or name),
                folder,
                model,
                data,
                results,
                samples,
            )
        )
    return out


def _fmt_score(x: float) -> str:
    return f"{x:.4g}" if abs(x) >= 1e-12 else "0"


def eval_scores_html(runs: list[EvalModelResults]) -> str:
    """One table: every metric of every model and benchmark, overall first, then per category."""
    trs = []
    for r in runs:
        for bench, result in r.results.items():
            ordered = [m for m in result.metrics if m.category is None] + [
                m for m in result.metrics if m.category is not None
            ]
            for m in ordered:
                cls = "overall" if m.category is None else "cat"
                trs.append(
                    f"<tr class='evalscore {cls}' data-results='{esc(r.label)}' data-bench='{esc(bench)}'>"
                    f"<td>{esc(r.label)}</td><td>{esc(bench)}</td><td>{esc(m.name)}</td>"
                    f"<td>{esc(m.category or 'all')}</td><td class='num'>{_fmt_score(m.value)}</td>"
                    f"<td class='num'>{_fmt_score(m.stderr)}</td>"
                    f"<td class='num'>[{_fmt_score(m.ci95[0])}, {_fmt_score(m.ci95[1])}]</td>"
                    f"<td class='num'>{m.n:,}</td></tr>"
                )
    head = (
        "<tr><th>results</th><th>benchmark</th><th>metric</th><th>category</th><th>value</th>"
        "<th>stderr</th><th>95% interval</th><th>n</th></tr>"
    )
    return f"<table class='evalscores'>{head}{''.join(trs)}</table>"


def _verdict_text(correct: float) -> tuple[str, str]:
    if correct >= 1:
        return "right", "right"
    if correct <= 0:
        return "wrong", "wrong"
    return "wrong", f"{correct:.2f}"


def eval_samples_html(
    r: EvalModelResults, bench: str, limit: int, thumbs: dict[Path, str | None]
) -> tuple[str, int, int]:
    """The per-sample table of one model on one benchmark: (html, rows shown, wrong rows shown).
    Over ``limit`` samples, the wrong ones come first, so the filter still shows each of them."""
    samples = r.samples.get(bench, [])
    order = sorted(range(len(samples)), key=lambda i: samples[i].verdict.correct >= 1)
    keep = sorted(order[:limit])
    trs = []
    wrong = 0
    for i in keep:
        s = samples[i]
        v = s.verdict
        cls, text = _verdict_text(v.correct)
        wrong += cls == "wrong"
        pics = []
        for p in s.images[:4]:
            if p is not None and p not in thumbs:
                try:
                    thumbs[p] = thumbnail_uri(p.read_bytes(), EVAL_THUMB_PX)
                except (OSError, ValueError, SyphusError):
                    thumbs[p] = None
            pics.append(img_tag(thumbs.get(p) if p is not None else None, v.sample_id, EVAL_THUMB_PX))
        options = (
            "<ul class='opts'>"
            + "".join(f"<li>{esc(k)}. {esc(o)}</li>" for k, o in s.options.items())
            + "</ul>"
            if s.options
            else ""
        )
        trs.append(
            f"<tr class='evalrow {cls}' data-right='{1 if cls == 'right' else 0}'>"
            f"<td>{''.join(pics) or '&ndash;'}</td>"
            f"<td><span class='note'>{esc(v.sample_id)} &middot; {esc(v.category)}</span><br>"
            f"{esc(s.question) if s.question is not None else '&ndash;'}{options}</td>"
            f"<td class='pred'>{esc(v.prediction)}</td><td>{esc(v.parsed) if v.parsed is not None else '&ndash;'}</td>"
            f"<td>{esc(v.target)}</td><td class='verdict'>{esc(text)}</td></tr>"
        )
    head = (
        "<tr><th>image</th><th>question</th><th>prediction</th><th>parsed</th><th>target</th>"
        "<th>verdict</th></tr>"
    )
    n_wrong = sum(1 for s in samples if s.verdict.correct < 1)
    more = (
        f'<p class="note">Showing {len(keep):,} of {len(samples):,} samples: all {n_wrong:,} wrong ones first.</p>'
        if len(keep) < len(samples) and wrong == n_wrong
        else (
            f'<p class="note">Showing {len(keep):,} of {len(samples):,} samples ({n_wrong:,} wrong).</p>'
            if len(keep) < len(samples)
            else ""
        )
    )
    return f"{more}<table class='evalsamples'>{head}{''.join(trs)}</table>", len(keep), wrong


def eval_html(runs: list[EvalModelResults], limit: int) -> tuple[str, int]:
    """The eval page: the scores table, a filter to the wrong answers, and each model's samples per
    benchmark. Returns (html, sample rows shown)."""
    thumbs: dict[Path, str | None] = {}
    parts = [eval_scores_html(runs)]
    parts.append(
        '<p class="filter"><label><input type="checkbox" id="only-wrong"> show only the wrong answers</label> '
        '<span id="eval-shown" class="note"></span></p>'
    )
    rows = 0
    for r in runs:
        if not r.show_samples:
            continue
        for bench, result in r.results.items():
            table, n, _ = eval_samples_html(r, bench, limit, thumbs)
            rows += n
            data = f" &middot; data {esc(r.data[bench])}" if bench in r.data else ""
            notes = "".join(f"<li>{esc(n_)}</li>" for n_ in result.notes)
            parts.append(
                f'<section class="evalrun" data-results="{esc(r.label)}" data-bench="{esc(bench)}">'
                f"<h3>{esc(r.label)} &middot; {esc(bench)}</h3>"
                f'<p class="note">model {esc(r.model)}{data} &middot; folder {esc(r.folder)}</p>'
                f"{f'<ul class=note>{notes}</ul>' if notes else ''}{table}</section>"
            )
    return "".join(parts), rows


# The wrong-answers filter: a checkbox (checked on load by ?only-wrong in the address, so a link can
# open the page filtered) hides the rows judged right and says how many rows show.
EVAL_SCRIPT = """
(function () {
  var box = document.getElementById("only-wrong");
  if (!box) return;
  function apply() {
    var rows = document.querySelectorAll("tr.evalrow"), shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var hide = box.checked && rows[i].getAttribute("data-right") === "1";
      rows[i].hidden = hide;
      if (!hide) shown++;
    }
    document.body.setAttribute("data-eval-shown", String(shown));
    document.getElementById("eval-shown").textContent = shown + " of " + rows.length + " samples shown";
  }
  if (/[?&]only-wrong\\b/.test(window.location.search)) box.checked = true;
  box.addEventListener("change", apply);
  apply();
})();
"""


def _is_report(path: Path) -> bool:
    """A file this command wrote (so --out may replace it): its head carries our title."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"<!DOCTYPE html>") and b"<title>Syphus report" in head


def _corpus_sections(
    corpus_dir: Path,
    run_id: str | None,
    training: TrainingFiles | None,
    samples_per_task: int,
    quarantine_limit: int,
    summary: ReportSummary,
    progress: Progress | None,
) -> tuple[str, list[str], str]:
    """(sections html, table-of-contents links, header line) of the corpus part of the report."""
    with Corpus(corpus_dir, create=False, read_only=True) as corpus:
        corpus.load_image_index()
        reader = CorpusReader(corpus, run_id)
        tasks = reader.tasks()
        hists = reader.score_histograms()
        sections, toc = [], []
        for task, n_pairs in tasks:
            keys = reader.sample_keys(task, samples_per_task)
            total = reader.count_samples(task)
            cards = []
            for key in keys:
                card, n = sample_html(reader, task, key)
                cards.append(card)
                summary.pairs += n
                if progress:
                    progress(1)
            summary.tasks[task] = len(keys)
            anchor = f"task-{esc(task)}"
            toc.append(f'<a href="#{anchor}">{esc(task)}</a>')
            sections.append(
                f'<h2 id="{anchor}">{esc(task)}</h2><p class="note">{total:,} sample(s), {n_pairs:,} pair(s); '
                f"showing {len(keys)}.</p>{histogram_svg(task, hists[task]) if task in hists else ''}{''.join(cards)}"
            )
        if not tasks:
            sections.append('<p class="note">No instructions in this corpus yet.</p>')
        q_html, summary.quarantined = quarantine_html(reader, quarantine_limit)
        r_html, summary.runs = runs_html(reader)
        sections.append(
            f'<h2 id="quarantine">Quarantined outputs</h2>{q_html}<h2 id="runs">Runs</h2>{r_html}'
        )
        toc += ['<a href="#quarantine">quarantine</a>', '<a href="#runs">runs</a>']
        if training is not None:
            sections.append(
                f'<h2 id="training">Training</h2>{training_html(training, reader, samples_per_task * 2)}'
            )
        n_images, n_ins = corpus.table_size("images"), corpus.table_size("instructions")
    scope = f"run {esc(run_id)}" if run_id else "all runs"
    header = (
        f"Corpus {esc(Path(corpus_dir).resolve())} &middot; {scope} &middot; "
        f"{n_ins:,} instructions, {n_images:,} images"
    )
    return "".join(sections), toc, header


def build_report(
    corpus_dir: str | Path | None,
    out: str | Path,
    *,
    run_id: str | None = None,
    train_dir: str | Path | None = None,
    eval_dirs: list[str | Path] = (),
    samples_per_task: int = 8,
    eval_samples: int = 500,
    quarantine_limit: int = 100,
    progress: Progress | None = None,
) -> ReportSummary:
    """Write the report for ``corpus_dir`` (and/or evaluation results) to ``out`` and return what
    it shows. ``eval_dirs`` are results folders of ``syphus eval``; a training folder's ``eval/``
    (its ``eval:`` block) is read too. Without a corpus the page shows the rest alone.

    ``progress(n)`` is called once per sample rendered (thumbnails are the slow part)."""
    if samples_per_task < 1:
        raise SyphusError(f"--samples: must be at least 1 (got {samples_per_task})")
    if eval_samples < 1:
        raise SyphusError(f"--eval-samples: must be at least 1 (got {eval_samples})")
    if corpus_dir is None and not eval_dirs and train_dir is None:
        raise SyphusError("nothing to report: give --corpus, --eval RESULTS or --train-dir")
    if corpus_dir is None and run_id is not None:
        raise SyphusError("--run needs --corpus (runs are a corpus's)")
    out = Path(out)
    if out.is_dir():
        raise SyphusError(f"{out}: --out is a folder; give a file name such as report.html")
    from curation.outputs import check_output_file, refuse_corpus_overlap

    if corpus_dir is not None:
        refuse_corpus_overlap(out, Path(corpus_dir))
    check_output_file(out, recognise=_is_report, what="report")
    training = read_training(Path(train_dir)) if train_dir is not None else None
    # every results folder is read (and a broken file reported) before anything is written
    eval_runs: list[EvalModelResults] = []
    for d in eval_dirs:
        eval_runs += read_eval_results(d)
    if training is not None and (training.root / "eval").is_dir():
        steps = read_eval_results(training.root / "eval", label="training eval")
        for r in steps[:-1]:  # every step's scores; the samples of the last one (step-NNNNNN sorts by step)
            r.show_samples = False
        eval_runs += steps
    summary = ReportSummary(out=out)
    if corpus_dir is not None:
        body, toc, header = _corpus_sections(
            Path(corpus_dir), run_id, training, samples_per_task, quarantine_limit, summary, progress
        )
        title = Path(corpus_dir).name
    else:
        body, toc, header, title = "", [], "No corpus", "evaluation"
        if training is not None:
            body = f'<h2 id="training">Training</h2>{training_html(training, None, samples_per_task * 2)}'
    if training is not None:
        summary.training = True
        toc.append('<a href="#training">training</a>')
    script = SCRIPT
    if eval_runs:
        e_html, summary.eval_samples = eval_html(eval_runs, eval_samples)
        summary.eval_results = sum(len(r.results) for r in eval_runs)
        body += f'<h2 id="eval">Evaluation</h2>{e_html}'
        toc.append('<a href="#eval">evaluation</a>')
        script += EVAL_SCRIPT
    stamp = now().strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Syphus report: {esc(title)}</title><style>{CSS}</style></head>"
        f'<body data-samples="{summary.samples}" data-eval-samples="{summary.eval_samples}">'
        f"<header><h1>Syphus report</h1><p>{header} &middot; written {stamp}</p><nav>{''.join(toc)}</nav></header>"
        f"<main>{body}</main>"
        f"<script>{script}</script></body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    summary.nbytes = out.stat().st_size
    return summary
