"""``syphus report``: the HTML it writes, checked as text and in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from curation.report import build_report
from curation.store import Corpus
from schemas.errors import SyphusError
from syphus.cli import main

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"  # gitignored by tests/curation/report/.gitignore


def sections(page: str) -> list[str]:
    return re.findall(r'<section class="sample" data-task="([^"]+)"', page)


def test_report_shows_every_sample_pair_context_and_quarantine(corpus, tmp_path):
    out = tmp_path / "report.html"
    s = build_report(corpus.path, out)
    page = out.read_text(encoding="utf-8")
    assert s.tasks == corpus.samples
    assert sorted(sections(page)) == sorted(t for t, n in corpus.samples.items() for _ in range(n))
    assert f'data-samples="{sum(corpus.samples.values())}"' in page
    # pairs, the translation under its parent, and the annotation stored in extra
    assert "What colour is circle 1?" in page and "圆是什么颜色?" in page
    assert "A coloured circle number 2." in page and "the circle moved right" in page
    # in-context examples with their scores and thumbnails
    assert "0.910" in page and "0.850" in page and "image-knn" in page
    # quarantine with reasons, raw output escaped (never executed)
    assert "no &#x27;Question:&#x27; line in the reply" in page and "reply cut off at max_tokens" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    # run figures from runs.summary: tokens, cost, req/s
    assert "1,500" in page and "$0.0123" in page and "4.50" in page
    # self-contained: every image is inline, nothing is fetched
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)
    assert page.count('src="data:image/jpeg;base64,') >= 9


def test_run_filter_shows_only_that_run(corpus, tmp_path):
    out = tmp_path / "r.html"
    s = build_report(corpus.path, out, run_id=corpus.gen2_run)
    page = out.read_text(encoding="utf-8")
    assert s.tasks == {"LA": 1}
    assert "Is there a circle?" in page and "What colour is circle 1?" not in page
    assert s.quarantined == 0 and s.runs == 1
    # a retrieval run shows the queries it assigned context to, with that run's scores
    s = build_report(corpus.path, out, run_id=corpus.retrieve_run)
    assert s.tasks == {"LA": 1, "SD": 1}
    assert "0.400" in out.read_text(encoding="utf-8")


def test_request_log_figures(corpus, tmp_path):
    """Tokens, cost and req/s come from the generation request log when it has the run."""
    requestlog = pytest.importorskip("syphus.engine.requestlog")
    import datetime as dt

    t0 = dt.datetime(2024, 1, 1, 12, 0, 0)
    with Corpus(corpus.path) as c:
        log = requestlog.RequestLog(c)
        for k in range(10):
            log.record(
                requestlog.RequestRecord(
                    key=f"k{k}",
                    model="m",
                    status="done" if k else "error",
                    task="LA",
                    source_id=f"coco-{k}",
                    prompt_tokens=100,
                    completion_tokens=20,
                    cost=0.001,
                    run_id=corpus.gen2_run,
                    started_at=t0 + dt.timedelta(seconds=k),
                    finished_at=t0 + dt.timedelta(seconds=k + 1),
                )
            )
        log.fold()
        if hasattr(log, "close"):
            log.close()
    out = tmp_path / "r.html"
    build_report(corpus.path, out, run_id=corpus.gen2_run)
    row = re.search(r"<tr><td>" + re.escape(corpus.gen2_run) + r".*?</tr>", out.read_text(encoding="utf-8"))
    cells = re.findall(r"<td class='num'>([^<]*)</td>", row.group(0))
    assert cells[1:] == ["10", "1,200", "$0.0100", "1.00"]  # requests, tokens, cost, req/s over 10 s


def test_training_dir_loss_curve_and_eval_samples(corpus, train_dir, tmp_path):
    out = tmp_path / "r.html"
    s = build_report(corpus.path, out, train_dir=train_dir)
    page = out.read_text(encoding="utf-8")
    assert s.training
    assert 'src="data:image/png;base64,' in page  # loss.png inlined
    assert '<svg class="loss"' in page and "20 points" in page  # trainer_state.json log_history
    assert page.count("class='evalsample'") == 2 and "red red" in page
    assert "no image" in page  # the eval sample whose image is not in the corpus


def test_training_dir_without_files_says_so(corpus, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\nnot json\n')
    out = tmp_path / "r.html"
    build_report(corpus.path, out, train_dir=empty)
    page = out.read_text(encoding="utf-8")
    assert "No eval samples found" in page and "metrics.jsonl:3: not JSON, skipped" in page
    assert "2 points" in page  # a line still being written by a live run does not hide the others
    (empty / "metrics.jsonl").unlink()
    build_report(corpus.path, out, train_dir=empty)
    assert "No loss curve found" in out.read_text(encoding="utf-8")


def test_empty_corpus_and_errors(tmp_path):
    Corpus(tmp_path / "c").close()
    s = build_report(tmp_path / "c", tmp_path / "r.html")
    assert s.samples == 0 and "No instructions in this corpus yet" in (tmp_path / "r.html").read_text()
    with pytest.raises(SyphusError, match="no run 'nope'"):
        build_report(tmp_path / "c", tmp_path / "r.html", run_id="nope")
    with pytest.raises(SyphusError, match="no corpus here"):
        build_report(tmp_path / "missing", tmp_path / "r.html")
    with pytest.raises(SyphusError, match="--train-dir is not a folder"):
        build_report(tmp_path / "c", tmp_path / "r.html", train_dir=tmp_path / "nothere")


def test_cli_writes_report_and_prints_path(corpus, train_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "report.html"
    main(
        [
            "report",
            "--corpus",
            str(corpus.path),
            "--out",
            str(out),
            "--train-dir",
            str(train_dir),
            "--samples",
            "2",
        ]
    )
    printed = capsys.readouterr()
    assert f"report: {out.resolve()}" in printed.out
    assert sections(out.read_text(encoding="utf-8")).count("LA") == 2
    with pytest.raises(SystemExit) as e:
        main(["report", "--corpus", str(corpus.path), "--run", "nope", "--out", str(out)])
    assert e.value.code == 1 and "no run 'nope'" in capsys.readouterr().err


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
    ]  # fmt: skip
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (CI installs it)"
)
def test_report_in_headless_chromium(corpus, train_dir, tmp_path):
    out = tmp_path / "report.html"
    s = build_report(corpus.path, out, train_dir=train_dir)
    url = out.resolve().as_uri()
    dom = chromium(["--dump-dom", url], tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # console messages (JS errors, failed loads) are logged as CONSOLE(...) lines
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert f'data-samples="{s.samples}"' in body
    assert 'data-broken-images="0"' in body, body  # the load-time check ran and every thumbnail decoded
    n_images = int(re.search(r'data-images="(\d+)"', body).group(1))
    assert n_images >= 12
    assert len(sections(dom.stdout)) == s.samples == sum(corpus.samples.values())

    shot = tmp_path / "report.png"
    r = chromium(["--window-size=1280,3400", f"--screenshot={shot}", url], tmp_path / "profile2")
    assert r.returncode == 0 and shot.exists() and shot.stat().st_size > 20_000, r.stderr[-2000:]
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")
    (ARTIFACTS / "report.json").write_text(json.dumps({"samples": s.samples, "images": n_images}))
