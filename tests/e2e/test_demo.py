"""The README's demo, in its smallest form, end to end on the offline defaults.

``syphus demo --quick`` runs every stage as a real subprocess: import, generation with the local
SmolLM2 model, translation, retrieval, the drawn-shapes task imported beside the generated pairs,
curation, both exports, DeepSpeed training of a tiny Otter on CPU, eval on the held-out shapes
with real and with blank images, chat and the report. Rerunning it must resume: every request is
already in the log, so nothing is generated twice.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest


def _demo(out: Path) -> subprocess.CompletedProcess:
    """Run from the output's parent with a relative --out, as `make demo` does from the clone."""
    env = dict(os.environ, DS_ACCELERATOR="cpu", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "syphus.cli", "demo", "--quick", "--out", out.name],
        cwd=out.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "demo"
    proc = _demo(out)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = proc.stdout
    for title in [
        "generate LA pairs",
        "translate a few pairs",
        "retrieve in-context examples",
        "draw a small visual task",
        "train a small Otter",
        "evaluate on the held-out shapes",
        "blank images (the control)",
        "chat about a held-out image",
    ]:
        assert title in text
    assert "total" in text and "Otter's answer about" in text
    # the trained model reads the held-out images: clearly above the same model given blank ones
    real = float(re.search(r"trained Otter, real images: +([\d.]+)%", text).group(1))
    blank = float(re.search(r"same model, blank images: +([\d.]+)%", text).group(1))
    assert "Held-out shapes (120 questions" in text
    assert real >= blank + 15, text[-3000:]
    report = out / "report.html"
    assert text.rstrip().endswith(f"report: {report.resolve()}")
    html = report.read_text(encoding="utf-8")
    assert "<img" in html and "loss" in html.lower()
    # the eval page: both results with every held-out question and its verdict, and the scores the
    # training config's eval: block wrote every 200 steps (with the last step's 30 samples)
    assert 'id="eval"' in html and "eval/train_model" in html and "eval-blank/train_model" in html
    assert all(f"training eval/step-000{k}00" in html for k in (2, 4, 6))
    assert len(re.findall(r"<tr class='evalrow ", html)) == 2 * 120 + 30
    assert '"eval/mimicit/accuracy"' in (out / "train" / "metrics.jsonl").read_text()

    db = duckdb.connect(str(out / "corpus" / "corpus.duckdb"), read_only=True)
    n_requests = db.execute("select count(*) from requests").fetchone()[0]
    tasks = {t for (t,) in db.execute("select distinct task from instructions").fetchall()}
    generated = db.execute("select count(*) from instructions where run_id is not null").fetchone()[0]
    quarantined = db.execute("select count(*) from quarantine").fetchone()[0]
    contexts = db.execute("select count(*) from context_sets").fetchone()[0]
    db.close()
    assert n_requests >= 4  # LA, DC, SD and a translation: at least one request each
    assert "EXAMPLE" in tasks and "SHAPES" in tasks and contexts > 0
    assert generated + quarantined >= 4  # every reply became pairs or a quarantined row, none dropped
    assert (out / "train" / "model" / "model.safetensors").is_file()
    assert (out / "shards" / "manifest.json").is_file()

    # the same command again: every step resumes, nothing is requested twice
    again = _demo(out)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    db = duckdb.connect(str(out / "corpus" / "corpus.duckdb"), read_only=True)
    assert db.execute("select count(*) from requests").fetchone()[0] == n_requests
    db.close()
