"""The demo's configs are checked-in data, and the demo's inputs travel inside the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from schemas.mix import load_mix
from schemas.train import load_train_config
from syphus.cli.demo import CONFIGS, QUICK_STEPS, DemoPlan, write_configs
from tests.paths import REPO as ROOT

CONFIG_FILES = sorted((ROOT / "examples" / "configs").glob("*.yaml"))


def test_the_example_configs_are_the_ones_the_demo_ships():
    assert CONFIG_FILES and CONFIGS.resolve() == (ROOT / "examples" / "configs").resolve()


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_each_example_config_loads_with_the_project_loaders(path):
    if "mix" in path.name:
        mix = load_mix(path)
        assert mix.datasets()
    else:
        cfg = load_train_config(path)
        assert cfg.max_steps > 0


def test_demo_writes_the_checked_in_configs_with_its_step_count(tmp_path):
    write_configs(DemoPlan(out=tmp_path / "q", quick=True, train_steps=QUICK_STEPS))
    assert yaml.safe_load((tmp_path / "q" / "train.yaml").read_text()) == yaml.safe_load(
        (CONFIGS / "demo-train-quick.yaml").read_text()
    )
    write_configs(DemoPlan(out=tmp_path / "full"))
    assert yaml.safe_load((tmp_path / "full" / "train.yaml").read_text()) == yaml.safe_load(
        (CONFIGS / "demo-train.yaml").read_text()
    )
    write_configs(DemoPlan(out=tmp_path / "other", train_steps=40))
    train = load_train_config(tmp_path / "other" / "train.yaml")
    assert (train.max_steps, train.warmup_steps, train.save_every) == (40, 4, 20)
    assert train.model["name"] == "tiny"
    assert load_mix(tmp_path / "full" / "mix.yaml")


def _copy_source(dst: Path) -> None:
    """The files a wheel is built from (not the venv, caches or outputs), links kept as links."""
    skip = {".git", ".venv", "tests", "bench", "demo-out", "build", "dist", ".pytest_cache", ".ruff_cache"}
    shutil.copytree(
        ROOT,
        dst,
        symlinks=True,
        ignore=lambda d, names: [
            n for n in names if n in skip or n.endswith(".egg-info") or n == "__pycache__"
        ],
    )


def test_an_installed_wheel_carries_the_demo_data_and_configs(tmp_path):
    src = tmp_path / "src"
    _copy_source(src)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            ".",
            "-w",
            str(wheels),
        ],
        cwd=src,
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("syphus-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(site)
    for name in ("demo-mix.yaml", "demo-train.yaml", "demo-train-quick.yaml"):
        assert f"syphus/examples/configs/{name}" in names
    # Only the installed copy on the path: every file the demo's commands name must be inside it.
    check = (
        "from pathlib import Path; import syphus.cli.demo as d; "
        "plan = d.build_plan(d.DemoPlan(out=Path('out'))); d.write_configs(plan); "
        "paths = [Path(a) for _, cmd in plan.steps for a in cmd if a.startswith(str(d.EX))]; "
        "missing = [str(p) for p in paths if not p.exists()]; "
        "print(d.EX.resolve(), len(paths), missing)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.split(" ", 2)
    assert Path(out[0]).is_relative_to(site) and int(out[1]) >= 8 and out[2].strip() == "[]"
    help_ = subprocess.run(
        [sys.executable, "-m", "syphus.cli", "demo", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert help_.returncode == 0 and "--quick" in help_.stdout
