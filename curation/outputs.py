"""Where a command may write: never over what it did not write, never into the corpus.

Every command that takes ``--out`` asks these checks first, so that a mistyped path cannot
replace a user's folder, a file, or the corpus the command reads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from schemas.errors import SyphusError


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def refuse_corpus_overlap(
    out: Path, corpus: Path, *, option: str = "--out", containing: bool = False
) -> None:
    """Refuse an output inside the corpus folder (or the corpus itself); with ``containing``,
    also a folder that holds the corpus (a command that replaces its output would delete it)."""
    o, c = Path(out).resolve(), Path(corpus).resolve()
    if _within(o, c):
        raise SyphusError(
            f"{option} {out}: is inside the corpus {corpus}; choose a path outside the corpus folder"
        )
    if containing and _within(c, o):
        raise SyphusError(
            f"{option} {out}: holds the corpus {corpus}; choose a folder that does not contain it"
        )


def check_output_file(
    out: Path, *, recognise: Callable[[Path], bool], what: str, option: str = "--out"
) -> None:
    """An output file may be created, or replaced when ``recognise`` says this command wrote it."""
    out = Path(out)
    if out.is_dir():
        raise SyphusError(f"{option} {out}: is a folder; give a file name for the {what}")
    if out.exists() and not recognise(out):
        raise SyphusError(
            f"{option} {out}: file exists and is not a {what} syphus wrote; "
            "choose another name or remove it yourself"
        )


def check_output_folder(
    out: Path, *, owned: Callable[[Path], set[str] | None], what: str, option: str = "--out"
) -> None:
    """An output folder that will be replaced whole must be absent, empty, or one this command
    wrote: ``owned(out)`` returns the names it wrote there (None when it is not ours), and any
    other entry in the folder makes it the user's."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise SyphusError(f"{option} {out}: exists and is not a folder; choose another path")
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return
    ours = owned(out)
    if ours is None:
        raise SyphusError(
            f"{option} {out}: folder exists and is not a {what} syphus wrote (no valid manifest); "
            "choose another folder or empty it yourself"
        )
    foreign = sorted(entries - ours)
    if foreign:
        raise SyphusError(
            f"{option} {out}: holds '{foreign[0]}', which syphus did not write"
            + (f" (+{len(foreign) - 1} more)" if len(foreign) > 1 else "")
            + "; move it out or choose another folder"
        )


def safe_child(folder: Path, name: str, *, what: str) -> Path:
    """``folder / name`` where ``name`` comes from data: refuse anything that would land
    outside ``folder`` (separators, '..', absolute paths)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise SyphusError(f"{what} '{name}': not usable as a file name (no separators, no leading dot)")
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise SyphusError(f"{what} '{name}': would be written outside {folder}")
    return path
