"""Resolve a dataset-mix YAML (schemas/mix.py) into a sampling plan for the trainer.

Per dataset: ``available`` records (MIMIC-IT: records in the instructions JSON; shards: rows in
the shard manifest, restricted to ``tasks``/``langs`` if given), and ``num_samples`` (-1: all).
Up-sampling repeats every record ``full_passes`` times and adds a seeded sample of the
remainder; down-sampling takes a seeded sample. The plan file (JSON) lists, per dataset,
``full_passes`` and the ``extra`` records (MIMIC-IT instruction ids, or global row numbers of
the shard directory in manifest order), so the trainer draws exactly
``full_passes * available + len(extra)`` records.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from schemas.errors import SyphusError
from schemas.mix import MixConfig, MixDataset, load_mix

PLAN_VERSION = 1


@dataclass
class PlanEntry:
    group: str
    name: str
    source: str  # mimicit | shards
    path: str
    images_path: str | None
    train_config_path: str | None
    available: int
    num_samples: int  # resolved count (never -1)
    full_passes: int
    index_kind: str  # id | row
    extra: list = field(default_factory=list)
    share_of_group: float = 0.0
    share_of_total: float = 0.0


@dataclass
class MixPlan:
    version: int
    mix_file: str
    seed: int
    total: int
    groups: dict[str, int]
    datasets: list[PlanEntry]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)


def _mimicit_ids(path: Path, where: str) -> list[str]:
    if not path.is_file():
        raise SyphusError(f"{where}: mimicit_path {path} not found")
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise SyphusError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}") from e
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise SyphusError(f"{path}: not a MIMIC-IT instructions file (expected a 'data' object of records)")
    return list(data["data"].keys())


def _shard_rows(path: Path, ds: MixDataset, where: str) -> np.ndarray:
    """Global row numbers (manifest order) that pass the dataset's task / lang filters."""
    man_path = path / "manifest.json"
    if not man_path.is_file():
        raise SyphusError(
            f"{where}: shards_path {path} has no manifest.json (write it with 'syphus export shards')"
        )
    from schemas.shards import ShardManifest

    try:
        man = ShardManifest.model_validate_json(man_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise SyphusError(f"{man_path}: invalid shard manifest ({str(e).splitlines()[0]})") from e
    if not ds.tasks and not ds.langs:
        return np.arange(man.rows)
    import pyarrow.parquet as pq

    keep, base = [], 0
    for sf in man.shards:
        part = path / sf.instructions
        if not part.is_file():
            raise SyphusError(f"{man_path}: shard file {sf.instructions} is missing")
        t = pq.read_table(part, columns=["task", "lang"])
        ok = np.ones(t.num_rows, bool)
        if ds.tasks:
            ok &= np.isin(np.array(t.column("task").to_pylist(), dtype=object), ds.tasks)
        if ds.langs:
            ok &= np.isin(np.array(t.column("lang").to_pylist(), dtype=object), ds.langs)
        keep.append(base + np.flatnonzero(ok))
        base += t.num_rows
    return np.concatenate(keep) if keep else np.zeros(0, np.int64)


def _sample(rng: np.random.Generator, available: int, want: int) -> tuple[int, np.ndarray]:
    """(full passes, positions of the extra records) for ``want`` draws from ``available``."""
    if want == -1:
        return 1, np.zeros(0, np.int64)
    if available == 0:
        return 0, np.zeros(0, np.int64)
    passes, rest = divmod(want, available)
    extra = np.sort(rng.choice(available, rest, replace=False)) if rest else np.zeros(0, np.int64)
    return passes, extra


def resolve_mix(mix: MixConfig, *, seed: int = 0, mix_file: str = "") -> MixPlan:
    entries: list[PlanEntry] = []
    for g, name, ds in mix.datasets():
        where = f"{mix_file}: {g}.{name}"
        # each dataset gets its own stream, so adding a dataset does not reshuffle the others
        rng = np.random.default_rng([seed, *name.encode("utf-8")])
        for key in ("images_path", "train_config_path"):
            p = getattr(ds, key)
            if p is not None and not Path(p).exists():
                raise SyphusError(f"{where}: {key} {p} not found")
        if ds.mimicit_path is not None:
            ids = _mimicit_ids(Path(ds.mimicit_path), where)
            avail = len(ids)
            passes, extra = _sample(rng, avail, ds.num_samples)
            extra_list, kind, src, path = [ids[i] for i in extra], "id", "mimicit", ds.mimicit_path
        else:
            rows = _shard_rows(Path(ds.shards_path), ds, where)
            avail = len(rows)
            passes, extra = _sample(rng, avail, ds.num_samples)
            extra_list, kind, src, path = rows[extra].tolist(), "row", "shards", ds.shards_path
        if avail == 0 and ds.num_samples > 0:
            raise SyphusError(f"{where}: num_samples is {ds.num_samples} but the dataset has no records")
        count = avail if ds.num_samples == -1 else ds.num_samples
        entries.append(
            PlanEntry(
                g,
                name,
                src,
                path,
                ds.images_path,
                ds.train_config_path,
                avail,
                count,
                passes,
                kind,
                extra_list,
            )
        )
    groups: dict[str, int] = {}
    for e in entries:
        groups[e.group] = groups.get(e.group, 0) + e.num_samples
    total = sum(groups.values())
    for e in entries:
        e.share_of_group = round(e.num_samples / groups[e.group], 6) if groups[e.group] else 0.0
        e.share_of_total = round(e.num_samples / total, 6) if total else 0.0
    return MixPlan(PLAN_VERSION, mix_file, seed, total, groups, entries)


def plan_mix(mix_yaml: str | Path, *, seed: int = 0, out: str | Path | None = None) -> MixPlan:
    """Load, resolve and (if ``out``) write the plan atomically."""
    mix = load_mix(mix_yaml)
    plan = resolve_mix(mix, seed=seed, mix_file=str(mix_yaml))
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".partial")
        tmp.write_text(plan.to_json(), encoding="utf-8")
        tmp.replace(out)
    return plan
