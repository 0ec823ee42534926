"""Shared pieces of the bad-input sweep: a small valid corpus per module and the one assertion
every refused input must pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.curation.store.helpers import run_syphus
from tests.e2e.sweep.digest import corpus_digest
from tests.paths import REAL_DATA as REAL


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The real-format Spot-the-Diff MIMIC-IT slice imported once: instructions, context and
    images, so that a refused command has something to leave untouched."""
    root = tmp_path_factory.mktemp("corpus")
    src = REAL / "mimicit"
    c = root / "c"
    rc, _, err = run_syphus(
        "import", "mimicit", src / "SD_instructions.json", "-c", c, "-i", src / "SD.parquet",
        "--train", src / "SD_train.json",
    )  # fmt: skip
    assert rc == 0, err
    return c


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder for the bad files of one case."""
    return tmp_path


def copy_real(fmt: str, name: str, dest: Path) -> Path:
    """A real slice copied to ``dest`` (same name), ready to be corrupted."""
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(REAL / fmt / name, dest / name))


SLOW_KINDS = ("huge yaml",)  # PyYAML's pure-Python scanner takes ~12 s over a 10 MB line


def run_syphus_with_warnings(*argv) -> tuple[int, str, str]:
    """``run_syphus``, with the Python warnings a user's terminal would show appended to stderr
    (in-process, pytest would otherwise swallow them). Python's default filters hide deprecation,
    import and resource warnings outside ``__main__``; so does this."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=hidden)
        rc, out, err = run_syphus(*argv)
    shown = "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n" for w in caught)
    return rc, out, shown + err


def cases(gen) -> list:
    """``pytest.param``s named by their first field (the kind of bad input); the few heavy
    kinds are marked slow."""
    return [pytest.param(*c, id=c[0], marks=[pytest.mark.slow] if c[0] in SLOW_KINDS else []) for c in gen]


def refused(corpus_dir: Path | None, name: str, *argv, warnings: tuple[str, ...] = ()) -> str:
    """Run ``syphus ARGV``; assert it failed with exactly one error line that names ``name``,
    no traceback, and (with a corpus) an unchanged corpus. ``warnings`` are prefixes of the
    documented warning lines the command may print before its error. Returns the error line."""
    before = corpus_digest(corpus_dir) if corpus_dir is not None else None
    rc, _, err = run_syphus_with_warnings(*argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    others = [ln for ln in lines if not ln.startswith("error:") and not ln.startswith(warnings or ("\0",))]
    assert rc == 1 and "Traceback" not in err, f"rc={rc}\n{err[-3000:]}"
    assert len(errors) == 1 and not others, err[-3000:]
    assert name in errors[0], f"{name!r} not named in: {errors[0][:2000]}"
    assert len(errors[0]) < 2000, f"an error line of {len(errors[0])} characters: {errors[0][:2000]}"
    if before is not None:
        assert corpus_digest(corpus_dir) == before
    return errors[0]
