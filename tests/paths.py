"""Where the repository and the real-data slices are, for every test folder at any depth."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO / "tests" / "data" / "real"
