"""A few sweep cases as a user runs them, in a fresh ``python -m syphus.cli`` process: what
reaches the real stderr (library warnings, logging, C-level writes) is one line too."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from tests.e2e.sweep.bad import Marker
from tests.e2e.sweep.conftest import REAL
from tests.e2e.sweep.digest import corpus_digest

pytestmark = pytest.mark.slow  # each case starts Python (and some import torch)


def _cases(tmp):
    sd = REAL / "spot_the_diff" / "val.json"
    yield "generate non-utf8", "val.json", sd.read_bytes().replace(b"the", b"th\xe9", 1), [
        "generate", "--task", "SD", "--dry-run", "--annotations", "{f}"]  # fmt: skip
    ins = (REAL / "mimicit" / "SD_instructions.json").read_bytes()
    yield "import truncated", "XD_instructions.json", ins[: len(ins) // 2], ["import", "mimicit", "{f}"]
    yield "train nan lr", "train.yaml", b"max_steps: 3\nlr: .nan\n", [
        "train", "--mix", str(REAL / "otter_mix" / "Demo_Data.yaml"), "--config", "{f}", "--out", str(tmp / "run"),
        "--cpu", "--print-command"]  # fmt: skip
    yield "convert pickle", "checkpoint.pt", pickle.dumps({"w": Marker(tmp / "MARKER")}), [
        "convert", "{f}", "--lm", "tiny-llama", "--vision-encoder", "hf-clip:none", "--out", str(tmp / "out")]  # fmt: skip
    yield "embed pickle", "weights.pt", pickle.dumps({"w": Marker(tmp / "MARKER")}), [
        "embed", "--kind", "image", "--workers", "0", "--model", "open_clip:RN50:{f}"]  # fmt: skip


@pytest.mark.parametrize(
    "case", ["generate non-utf8", "import truncated", "train nan lr", "convert pickle", "embed pickle"]
)
def test_one_line_on_the_real_stderr(case, corpus, tmp_path):
    kind, name, data, argv = next(c for c in _cases(tmp_path) if c[0] == case)
    f = tmp_path / name
    f.write_bytes(data)
    argv = [a.replace("{f}", str(f)) for a in argv]
    if argv[0] in ("generate", "import", "embed"):
        argv += ["--corpus", str(corpus)]
    before = corpus_digest(corpus)
    proc = subprocess.run(
        [sys.executable, "-m", "syphus.cli", *argv], capture_output=True, text=True, timeout=300
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error: ") and name in lines[0]
    assert corpus_digest(corpus) == before
    assert not (tmp_path / "MARKER").exists()
