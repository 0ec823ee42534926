"""The command line as a package: its entry points, and one way to name the corpus."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from syphus import __version__
from syphus.cli import app


def test_python_dash_m_runs_the_same_cli_as_the_console_script():
    out = subprocess.run(
        [sys.executable, "-m", "syphus.cli", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"syphus {__version__}"


@pytest.mark.parametrize(
    "command",
    [
        ["generate"],
        ["reparse"],
        ["report"],
        ["stats"],
        ["embed"],
        ["retrieve"],
        ["curate"],
        ["import", "mimicit"],
        ["import", "images"],
        ["export", "mimicit"],
        ["export", "shards"],
    ],
)
def test_every_command_on_a_corpus_takes_it_as_dash_dash_corpus_or_dash_c(command):
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert re.search(r"--corpus\s+-c\s", r.output), r.output


def test_positional_and_option_corpus_name_the_same_thing(tmp_path):
    # embed/retrieve/curate keep their positional form; giving two different corpora is refused
    r = subprocess.run(
        [sys.executable, "-m", "syphus.cli", "curate", str(tmp_path / "a"), "-c", str(tmp_path / "b")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "two corpora given" in r.stderr
