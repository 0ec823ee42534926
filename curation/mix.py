"""Resolve a dataset-mix YAML (schemas/mix.py) into a sampling plan for the trainer.

Per dataset: ``available`` records (MIMIC-IT: the ids of the context map if given, that is the
``*_train.json`` the YAML names as ``train_config_path``, else the records of the instructions
JSON, as Otter reads them; shards: rows in manifest order, restricted to ``tasks``/``langs`` if
given), and ``num_samples`` (-1 or 0: all, as in Otter's
``resample_data``). Up-sampling repeats every record ``full_passes`` times and adds a seeded
sample of the remainder; down-sampling takes a seeded sample. The plan file (JSON) lists, per
dataset, ``full_passes`` and the ids of the ``extra`` records.

``sample_positions`` is the one sampler: the trainer (``trainer/data.py``) calls it with the same
seed, dataset name and record count, so the plan a user inspects is exactly what trains.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from schemas.errors import SyphusError
from schemas.mix import MixConfig, MixDataset, load_mix

PLAN_VERSION = 2  # 2: extras are ids for every source; num_samples 0 means all


@dataclass
class PlanEntry:
    group: str
    name: str
    source: str  # mimicit | shards
    path: str
    images_path: str | None
    train_config_path: str | None
    available: int
    num_samples: int  # resolved count (never -1 or 0 unless the dataset is empty)
    full_passes: int
    extra: list[str] = field(default_factory=list)  # ids drawn once more after the full passes
    unknown: int = 0  # context-map ids absent from the instructions: skipped when drawn
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


def _mimicit_ids(path: Path, context_map_path: Path | None, where: str) -> tuple[list[str], int]:
    """(the ids the dataset offers, how many of them the instructions file lacks)."""
    from curation.formats import read_context_map, read_instructions

    if not path.is_file():
        raise SyphusError(f"{where}: mimicit_path {path} not found")
    _, records = read_instructions(path)
    context_map = read_context_map(context_map_path) if context_map_path is not None else None
    ids = mimicit_order(list(records), context_map)
    return ids, sum(1 for i in ids if i not in records)


def mimicit_order(instruction_ids: list[str], context_map: dict | None) -> list[str]:
    """The records a MIMIC-IT dataset offers, in order: the context map's ids when there is one
    (Otter samples from the keys of its ``*_train.json``), else every instruction."""
    return list(context_map) if context_map is not None else list(instruction_ids)


def _shard_rows(path: Path, ds: MixDataset, where: str) -> tuple[int, list[list[str]]]:
    """(number of rows that pass the dataset's task / lang filters, their ids per shard file)."""
    import pyarrow.parquet as pq

    from curation.formats import read_shard_manifest

    try:
        man = read_shard_manifest(path)
    except SyphusError as e:
        raise SyphusError(f"{where}: shards_path {e}") from e
    parts, total = [], 0
    for sf in man.shards:
        part = path / sf.instructions
        try:
            t = pq.read_table(part, columns=["id", "task", "lang"])
        except (OSError, ValueError) as e:  # pyarrow's errors for a damaged or foreign file
            reason = str(e).splitlines()[0].replace(f"'{part}'", "").strip()
            raise SyphusError(
                f"{part}: cannot read shard part ({reason[:200]}); export the shards again"
            ) from e
        ok = np.ones(t.num_rows, bool)
        if ds.tasks:
            ok &= np.isin(np.array(t.column("task").to_pylist(), dtype=object), ds.tasks)
        if ds.langs:
            ok &= np.isin(np.array(t.column("lang").to_pylist(), dtype=object), ds.langs)
        ids = t.column("id").to_pylist()
        parts.append([ids[i] for i in np.flatnonzero(ok)])
        total += int(ok.sum())
    return total, parts


def resolved_count(available: int, num_samples: int) -> int:
    """Records a dataset contributes per epoch: -1 and 0 mean all of them (Otter's meaning)."""
    return available if num_samples in (-1, 0) else num_samples


def sample_positions(seed: int, name: str, available: int, num_samples: int) -> tuple[int, np.ndarray]:
    """(full passes, sorted positions of the extra records) for one dataset: the sampler shared
    by ``syphus mix`` and the trainer. Each dataset draws from its own stream, seeded by
    ``(seed, name)``, so adding a dataset does not reshuffle the others."""
    want = resolved_count(available, num_samples)
    if available == 0:
        return 0, np.zeros(0, np.int64)
    passes, rest = divmod(want, available)
    if not rest:
        return passes, np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, *name.encode("utf-8")])
    return passes, np.sort(rng.choice(available, rest, replace=False))


def resolve_mix(mix: MixConfig, *, seed: int = 0, mix_file: str = "") -> MixPlan:
    entries: list[PlanEntry] = []
    for g, name, ds in mix.datasets():
        where = f"{mix_file}: {g}.{name}"
        for key in ("images_path", "train_config_path"):
            p = getattr(ds, key)
            if p is not None and not Path(p).exists():
                raise SyphusError(f"{where}: {key} {p} not found")
        if ds.mimicit_path is not None:
            context_map = Path(ds.train_config_path) if ds.train_config_path else None
            ids, unknown = _mimicit_ids(Path(ds.mimicit_path), context_map, where)
            avail, src, path = len(ids), "mimicit", ds.mimicit_path
            passes, extra = sample_positions(seed, name, avail, ds.num_samples)
            extra_ids = [ids[i] for i in extra]
        else:
            avail, parts = _shard_rows(Path(ds.shards_path), ds, where)
            unknown = 0
            src, path = "shards", ds.shards_path
            passes, extra = sample_positions(seed, name, avail, ds.num_samples)
            extra_ids = _ids_at(parts, extra)
        if avail == 0 and ds.num_samples > 0:
            raise SyphusError(f"{where}: num_samples is {ds.num_samples} but the dataset has no records")
        entries.append(
            PlanEntry(
                g,
                name,
                src,
                path,
                ds.images_path,
                ds.train_config_path,
                avail,
                resolved_count(avail, ds.num_samples),
                passes,
                extra_ids,
                unknown,
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


def _ids_at(parts: list[list[str]], positions: np.ndarray) -> list[str]:
    """Ids at sorted global positions of the filtered rows, walking the shard files once."""
    out, base, k = [], 0, 0
    for ids in parts:
        while k < len(positions) and positions[k] < base + len(ids):
            out.append(ids[int(positions[k]) - base])
            k += 1
        base += len(ids)
    return out


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
