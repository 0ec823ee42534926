"""The report's eval page: results folders written by the real runner (``syphus.eval.runner``) for
a model with known answers on held-out drawn shapes, read by ``syphus report --eval``; checked as
text, through the CLI's one-line errors, and in headless Chromium (the wrong-answers filter)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from curation.shapes import write_shapes_task
from syphus.cli import main
from syphus.eval.benchmarks import get_benchmark
from syphus.eval.runner import evaluate

from .test_report import ARTIFACTS, CHROMIUM, chromium


class SaysLeft:
    """A model under test that answers "Left." to everything: right exactly where the target is left."""

    name = "says-left"

    def generate(self, batch, *, max_new_tokens):
        return ["Left." for _ in batch]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    task = write_shapes_task(root / "shapes", train=10, heldout=30, seed=3)
    out = root / "results"
    bench = get_benchmark("mimicit")
    evaluate(SaysLeft(), [(bench, task.heldout, {})], out=out, batch_size=4, judge=None)
    targets = [json.loads(x) for x in (out / "says-left" / "mimicit.samples.jsonl").read_text().splitlines()]
    right = sum(t["target"] == "left" for t in targets)
    return {"root": root, "out": out, "n": len(targets), "right": right, "task": task}


def _report(tmp_path, *args: str, capsys=None) -> tuple[int, str]:
    out = tmp_path / "report.html"
    try:
        main(["report", *args, "--out", str(out)])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    err = capsys.readouterr().err if capsys else ""
    return code, err


def test_eval_page_shows_scores_with_intervals_and_every_sample(results, tmp_path, capsys):
    code, err = _report(tmp_path, "--eval", str(results["out"]), capsys=capsys)
    assert code == 0, err
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    saved = json.loads((results["out"] / "says-left" / "mimicit.json").read_text())
    overall = next(m for m in saved["metrics"] if m["category"] is None)
    assert overall["value"] == pytest.approx(results["right"] / results["n"])
    row = re.search(r"<tr class='evalscore overall'.*?</tr>", page).group(0)
    cells = re.findall(r"<td class='num'>([^<]*)</td>", row)
    shown_lo, shown_hi = (float(x) for x in cells[2].strip("[]").split(","))
    assert float(cells[0]) == pytest.approx(overall["value"], rel=1e-3)
    assert (shown_lo, shown_hi) == pytest.approx(tuple(overall["ci95"]), rel=1e-3, abs=1e-9)
    assert cells[3] == str(results["n"])
    # one line per category (colour, shape, where), each with its own interval
    assert len(re.findall(r"<tr class='evalscore cat'", page)) == 3
    rows = re.findall(r"<tr class='evalrow (right|wrong)' data-right='([01])'>(.*?)</tr>", page)
    assert len(rows) == results["n"]
    assert sum(r[0] == "right" for r in rows) == results["right"]
    # each sample: its image inline, the question, the prediction, the parsed answer and the target
    first = rows[0][2]
    assert 'src="data:image/jpeg;base64,' in first and "?" in first and "Left." in first
    assert "<td>left</td>" in first  # the parsed answer
    assert re.search(
        r"<td>(red|green|blue|yellow|circle|square|triangle|left|right)</td><td class='verdict'>", first
    )
    assert page.count('src="data:image/jpeg;base64,') == results["n"]
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)  # self-contained


def test_a_broken_results_file_is_one_line_naming_it(results, tmp_path, capsys):
    bad = tmp_path / "results"
    shutil.copytree(results["out"], bad)
    json_file = bad / "says-left" / "mimicit.json"
    json_file.write_text(json_file.read_text()[:-20])  # cut short
    code, err = _report(tmp_path, "--eval", str(bad), capsys=capsys)
    assert code == 1 and str(json_file) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "report.html").exists()

    shutil.copy(results["out"] / "says-left" / "mimicit.json", json_file)
    lines_file = bad / "says-left" / "mimicit.samples.jsonl"
    lines = lines_file.read_text().splitlines()
    rec = json.loads(lines[1])
    del rec["prediction"]
    lines[1] = json.dumps(rec)
    lines_file.write_text("\n".join(lines) + "\n")
    code, err = _report(tmp_path, "--eval", str(bad), capsys=capsys)
    assert code == 1 and f"{lines_file}:2: missing field 'prediction'" in err
    assert len(err.strip().splitlines()) == 1

    lines[1] = "{not json"
    lines_file.write_text("\n".join(lines) + "\n")
    code, err = _report(tmp_path, "--eval", str(bad), capsys=capsys)
    assert code == 1 and f"{lines_file}:2: not JSON" in err and len(err.strip().splitlines()) == 1

    code, err = _report(tmp_path, "--eval", str(tmp_path / "nothing"), capsys=capsys)
    assert code == 1 and "--eval is not a folder" in err
    code, err = _report(tmp_path, capsys=capsys)
    assert code == 1 and "nothing to report" in err


def test_images_outside_the_results_folder_are_not_read(results, tmp_path, capsys):
    moved = tmp_path / "results"
    shutil.copytree(results["out"], moved)
    secret = tmp_path / "private.png"
    shutil.copy(results["task"].example_image, secret)
    lines_file = moved / "says-left" / "mimicit.samples.jsonl"
    lines = [json.loads(x) for x in lines_file.read_text().splitlines()]
    lines[0]["images"] = ["../../private.png"]
    lines_file.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert _report(tmp_path, "--eval", str(moved), capsys=capsys)[0] == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/jpeg;base64,') == results["n"] - 1 and "no image" in page


def test_training_eval_folder_joins_the_page(results, corpus, tmp_path, capsys):
    """A training run's eval/ (its `eval:` block) is read as results, step by step; its files do
    not count as loss or eval-sample files of the training section."""
    train = tmp_path / "run"
    (train).mkdir()
    (train / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n')
    bench = get_benchmark("mimicit")
    for step in (1, 2):
        evaluate(
            SaysLeft(),
            [(bench, results["task"].heldout, {"limit": 6})],
            out=train / "eval",
            batch_size=4,
            judge=None,
            model_slug=f"step-{step:06d}",
        )
    code, err = _report(tmp_path, "--corpus", str(corpus.path), "--train-dir", str(train), capsys=capsys)
    assert code == 0, err
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "training eval/step-000001" in page and "training eval/step-000002" in page
    assert "2 points" in page and "Skipped" not in page
    # every step's scores, the samples of the last step only
    assert len(re.findall(r"<tr class='evalscore overall' data-results='training eval/step-", page)) == 2
    assert len(re.findall(r"<tr class='evalrow ", page)) == 6
    assert '<section class="evalrun" data-results="training eval/step-000002"' in page
    assert '<section class="evalrun" data-results="training eval/step-000001"' not in page


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (CI installs it)"
)
def test_wrong_answers_filter_in_headless_chromium(results, tmp_path, capsys):
    assert _report(tmp_path, "--eval", str(results["out"]), capsys=capsys)[0] == 0
    url = (tmp_path / "report.html").resolve().as_uri()
    n, right = results["n"], results["right"]
    assert 0 < right < n

    def dom(query: str, profile: str) -> str:
        r = chromium(["--dump-dom", url + query], tmp_path / profile)
        assert r.returncode == 0, r.stderr[-2000:]
        console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
        assert not console, console
        return r.stdout

    everything = dom("", "p1")
    body = re.search(r"<body[^>]*>", everything).group(0)
    assert f'data-eval-shown="{n}"' in body and 'data-broken-images="0"' in body
    assert f"{n} of {n} samples shown" in everything

    wrong_only = dom("?only-wrong", "p2")
    assert f'data-eval-shown="{n - right}"' in re.search(r"<body[^>]*>", wrong_only).group(0)
    rows = re.findall(r"<tr class=\"evalrow (right|wrong)\" data-right=\"[01]\"( hidden=\"\")?>", wrong_only)
    assert len(rows) == n
    assert all((kind == "right") == bool(hidden) for kind, hidden in rows)  # exactly the right ones hidden
    assert f"{n - right} of {n} samples shown" in wrong_only

    shot = tmp_path / "eval.png"
    r = chromium(["--window-size=1280,1600", f"--screenshot={shot}", url + "?only-wrong"], tmp_path / "p3")
    assert r.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, r.stderr[-2000:]
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "eval.png")
