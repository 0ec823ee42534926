"""The local fault-injecting server refuses a fault name it does not know."""

from __future__ import annotations

import subprocess
import sys

import pytest

from syphus.testing.openai_server import ServerConfig


def test_unknown_fault_name_is_refused_at_start():
    # A misspelt fault would never fire, so a test meant to exercise it would pass untested.
    proc = subprocess.run(
        [sys.executable, "-m", "syphus.testing.openai_server", "--fault", "503=0.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "unknown fault '503'" in proc.stderr and "429" in proc.stderr
    with pytest.raises(ValueError, match="unknown fault 'tiemout'"):
        ServerConfig(first_faults=["429", "tiemout"])
