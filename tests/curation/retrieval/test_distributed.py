"""torchrun with 2 CPU processes (gloo) embeds the same vectors as one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from curation.embed.models import load_embedder
from curation.embed.pipeline import embed_corpus
from curation.store import Corpus, InstructionRow
from tests.curation.retrieval.conftest import SHAPES, draw, make_corpus


@pytest.mark.slow
def test_torchrun_two_ranks_equals_one_process(tmp_path):
    images = {f"img{i}": draw(col, sh, offset=i) for i, (col, sh) in enumerate(SHAPES)}
    images["img_extra"] = draw("black", "square", offset=7)
    rows = [
        InstructionRow(f"q{i}", "T", f"question {i}", f"answer {i}", [iid]) for i, iid in enumerate(images)
    ]
    make_corpus(tmp_path / "one", images, rows).close()
    shutil.copytree(tmp_path / "one", tmp_path / "two")

    with Corpus(tmp_path / "one", create=False) as c:
        embed_corpus(c, load_embedder("effnet:lite0"), "image", batch_size=3, workers=0)
        keys1, v1 = c.load_vectors("effnet:lite0", "image")

    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1")
    # --chunk 2: several gather rounds, and an uneven last one (7 items on 2 ranks)
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "syphus.cli",
        "embed",
        str(tmp_path / "two"),
        "--kind",
        "image",
        "--workers",
        "0",
        "--batch-size",
        "2",
        "--chunk",
        "2",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "embedded 7 images" in proc.stdout

    with Corpus(tmp_path / "two", create=False) as c:
        keys2, v2 = c.load_vectors("effnet:lite0", "image")
        ranks = c.con.execute("SELECT config FROM runs WHERE command = 'embed image'").fetchone()[0]
    assert '"world_size": 2' in ranks
    assert keys1 == keys2
    assert np.allclose(v1, v2, atol=2e-3)  # float16 storage; batch composition differs between runs
