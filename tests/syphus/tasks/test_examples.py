"""The sample annotation files under examples/annotations read and render with their task."""

from __future__ import annotations

from pathlib import Path

import pytest

from syphus.tasks.registry import get_task
from tests.paths import REPO

EX = REPO / "examples" / "annotations"
SAMPLES = {
    "LA": (["la/captions_sample2017.json", "la/instances_sample2017.json"], {}),
    "CGD": (["cgd/captions_sample2017.json", "cgd/instances_sample2017.json"], {}),
    "SD": (["sd/train.json"], {}),
    "SN": (["sn/ScanRefer_filtered_sample.json"], {}),
    "DC": (["dc/train.json"], {}),
    "TVC": (["tvc/tvc_sample_release.jsonl", "tvc/tvqa_preprocessed_subtitles.jsonl"], {}),
    "VST": (["vst/sample.story-in-sequence.json"], {}),
    "E4D": (["e4d/narration.json"], {}),
    "translate": (["translate/LACONV_sample_instructions.json"], {"lang": "ja"}),
    str(EX / "custom" / "recipe.yaml"): (["custom/recipes.jsonl"], {}),
}


@pytest.mark.parametrize("name", list(SAMPLES), ids=lambda n: Path(n).stem)
def test_sample_reads_and_renders(name):
    files, options = SAMPLES[name]
    task = get_task(name, **options)
    anns = list(task.read([EX / f for f in files]))
    assert anns and all(a.image_ids for a in anns)
    for a in anns:
        assert len(task.messages(a)[-1]["content"]) > 20
