"""Training checkpoints that resume without trusting the run folder.

DeepSpeed writes and reads its checkpoints through a "checkpoint engine"; its default one reads
with ``torch.load(weights_only=False)``, so a ``.pt`` file planted in ``OUT/checkpoints`` would run
code on the next ``syphus train --out OUT``. ``VerifiedCheckpointEngine`` replaces it:

- saving records the sha256 of every file each rank writes; rank 0 then writes
  ``manifest.json`` into the checkpoint's folder, last, so a checkpoint without one is incomplete;
- resuming picks the newest checkpoint whose files all match their digests (an older one when
  the newest does not verify, with a one-line warning naming the file);
- loading reads only files listed in that manifest, weights-only: tensors, plain containers and
  the few DeepSpeed types below. Nothing in a checkpoint can run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from pathlib import Path

import torch

from schemas.errors import SyphusError

MANIFEST = "manifest.json"
# Present while a save is under way: a folder with it and no manifest is an interrupted save of
# ours, ignored on resume rather than refused.
SAVING = "SAVING"
TAG_PREFIX = "step"


def checkpoint_tag(step: int) -> str:
    return f"{TAG_PREFIX}{step:08d}"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def deepspeed_safe_globals() -> list:
    """The DeepSpeed classes its ZeRO and fp16/bf16 optimizer states pickle beside tensors; each is
    a plain record (no custom ``__setstate__``), so rebuilding one runs no code of the file's."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def load_weights_only(path: str | Path, map_location=None):
    """``torch.load`` that never unpickles arbitrary objects; a file it refuses is a one-line error."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(deepspeed_safe_globals()):
            # DeepSpeed pickles with protocol 4; torch warns about that on every weights-only load
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise SyphusError(
            f"{path}: refused to load as a training checkpoint ({_why_refused(e)}); "
            "move the checkpoint folder aside to resume from an earlier one, or use a new --out"
        ) from e


def _why_refused(e: Exception) -> str:
    """The informative part of torch's several-paragraph weights-only error, on one line."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text[text.index(marker) + len(marker) :]
        text = text.split(" Please use ")[0]
    words = " ".join(line.strip() for line in text.splitlines() if line.strip()).split(
        " Check the documentation"
    )[0]
    return (words or type(e).__name__)[:200]


class VerifiedCheckpointEngine:
    """DeepSpeed's checkpoint engine with digests on save and weights-only, manifest-checked loads.

    Wraps the engine DeepSpeed made (``engine.checkpoint_engine``); whatever it is not about
    (commit, decoupled writers, ...) is passed through unchanged.
    """

    def __init__(self, inner):
        self.inner = inner
        self.name = "VerifiedCheckpointEngine"
        self.written: dict[str, str] = {}  # absolute path -> sha256, this rank, current save
        self.readable: set[str] = set()  # absolute paths of the verified checkpoint being loaded

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def create(self, info):
        self.written = {}
        return self.inner.create(info)

    def save(self, state_dict, path: str):
        self.inner.save(state_dict, path)
        self.written[os.path.abspath(path)] = sha256_file(path)

    def load(self, path: str, map_location=None):
        if os.path.abspath(path) not in self.readable:
            raise SyphusError(
                f"{path}: not listed in a verified {MANIFEST}; refused to load it "
                "(move the checkpoint folder aside, or use a new --out)"
            )
        return load_weights_only(path, map_location)

    def allow(self, tag_dir: Path, manifest: dict) -> None:
        """Permit loading the files of one checkpoint whose manifest was verified."""
        self.readable = {os.path.abspath(tag_dir / name) for name in manifest["files"]}


def write_manifest(tag_dir: Path, step: int, written: list[dict[str, str]]) -> None:
    """Rank 0, after every rank saved: the digests of all files written, atomically and last."""
    files: dict[str, str] = {}
    root = os.path.abspath(tag_dir)
    for part in written:
        for path, digest in part.items():
            if os.path.dirname(path) != root:
                raise SyphusError(f"{path}: checkpoint file outside {tag_dir}; not recorded")
            files[os.path.basename(path)] = digest
    tmp = tag_dir / (MANIFEST + ".partial")
    tmp.write_text(json.dumps({"step": step, "files": dict(sorted(files.items()))}, indent=2))
    tmp.replace(tag_dir / MANIFEST)
    (tag_dir / SAVING).unlink(missing_ok=True)


def read_manifest(tag_dir: Path) -> dict:
    path = tag_dir / MANIFEST
    if not path.is_file():
        raise SyphusError(f"{path}: missing (an interrupted save, or a folder syphus train did not write)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        step = int(manifest["step"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise SyphusError(f"{path}: unreadable checkpoint manifest ({type(e).__name__})") from e
    if not isinstance(files, dict) or not files or step != int(tag_dir.name.removeprefix(TAG_PREFIX)):
        raise SyphusError(f"{path}: does not describe checkpoint {tag_dir.name}")
    for name, digest in files.items():
        # plain file names only: a manifest must not point the loader outside its folder
        if not isinstance(name, str) or not isinstance(digest, str) or Path(name).name != name:
            raise SyphusError(f"{path}: invalid file entry {name!r}")
    return manifest


def verify_checkpoint(tag_dir: Path) -> dict:
    """The manifest of ``tag_dir`` once every file it lists matches its sha256; else SyphusError."""
    manifest = read_manifest(tag_dir)
    for name, digest in manifest["files"].items():
        f = tag_dir / name
        if not f.is_file():
            raise SyphusError(f"{f}: listed in {MANIFEST} but missing")
        if sha256_file(f) != digest:
            raise SyphusError(f"{f}: does not match its sha256 in {MANIFEST} (corrupt or changed)")
    return manifest


def checkpoint_tags(ckpt_dir: Path) -> list[Path]:
    """Checkpoint folders, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(
        p
        for p in ckpt_dir.iterdir()
        if p.is_dir() and p.name.startswith(TAG_PREFIX) and p.name.removeprefix(TAG_PREFIX).isdigit()
    )


def newest_good_checkpoint(ckpt_dir: Path) -> tuple[Path | None, list[str]]:
    """(the newest checkpoint that verifies or None when there is none, a warning per newer one
    that did not). Checkpoints exist but none verifies: SyphusError naming the newest one's fault."""
    problems: list[str] = []
    interrupted: list[str] = []
    for tag_dir in reversed(checkpoint_tags(ckpt_dir)):
        if (tag_dir / SAVING).is_file() and not (tag_dir / MANIFEST).is_file():
            interrupted.append(f"{tag_dir}: an interrupted save, ignored")
            continue
        try:
            verify_checkpoint(tag_dir)
        except SyphusError as e:
            problems.append(str(e))
            continue
        return tag_dir, interrupted + [f"{p}; resuming from {tag_dir.name} instead" for p in problems]
    if problems:
        raise SyphusError(
            f"{problems[0]}; no checkpoint in {ckpt_dir} verifies: move it aside to start over, "
            "or use a new --out"
        )
    return None, interrupted
