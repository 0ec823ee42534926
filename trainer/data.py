"""The streaming training dataset over a mix of exported shards and MIMIC-IT files.

The stream is built in two layers so that memory does not grow with the corpus:

1. *Records*: light text rows (instruction, answer, image ids, in-context examples) read
   row group by row group from parquet (or from a MIMIC-IT JSON file), sampled per dataset
   to ``num_samples``, interleaved across datasets at random in proportion to what each has
   left, and shuffled through a bounded buffer. All of it is seeded by ``(seed, epoch)``, so
   every rank and worker sees the same global order without talking to each other.
2. *Batches*: the global order is cut into micro-batches; rank ``r`` of ``W`` takes every
   ``W``-th one and, inside a rank, DataLoader worker ``w`` of ``N`` every ``N``-th of those,
   so a DataLoader's round-robin over workers returns them in order. Only owned batches decode
   images and tokenize. Resuming at micro-batch ``k`` replays the text stream up to ``k``
   without decoding anything.

A sample whose image is missing or cannot be decoded is dropped with a counted warning; a
micro-batch that loses all its samples becomes a placeholder whose labels are all ignored,
so ranks stay in step and the loss stays finite.
"""

from __future__ import annotations

import base64
import io
import json
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from schemas.errors import SyphusError
from schemas.mix import MixConfig, MixDataset
from schemas.shards import ShardManifest
from trainer.collate import Batch, EncodedSample, collate
from trainer.prompting import IGNORE_INDEX, PromptBuilder, Turn

MEDIA_BY_GROUP = {
    "IMAGE_TEXT": "image",
    "IMAGE_TEXT_IN_CONTEXT": "image",
    "VIDEO_TEXT": "video",
    "TEXT_ONLY": "none",
}


@dataclass
class Example:
    instruction: str
    answer: str
    image_ids: list[str]


@dataclass
class Record:
    """One instruction-response pair with its in-context examples, text only."""

    id: str
    media: str  # image | video | none
    query: Example
    context: list[Example]
    source: int = 0  # index of the dataset it came from
    part: int = 0  # which image file of that dataset holds its images


class MissingImage(KeyError):
    pass


class _ParquetImages:
    """Image lookup by id in one parquet file, one row group decoded at a time."""

    def __init__(self, path: Path, id_column: str, value_column: str, decode_base64: bool):
        self.path = path
        self.value_column = value_column
        self.decode_base64 = decode_base64
        self.file = pq.ParquetFile(path)
        self.where: dict[str, tuple[int, int]] = {}
        for rg in range(self.file.num_row_groups):
            ids = self.file.read_row_group(rg, columns=[id_column]).column(0).to_pylist()
            for i, image_id in enumerate(ids):
                self.where[str(image_id)] = (rg, i)
        self._cached: tuple[int, list] | None = None

    def get(self, image_id: str) -> bytes:
        if image_id not in self.where:
            raise MissingImage(image_id)
        rg, i = self.where[image_id]
        if self._cached is None or self._cached[0] != rg:
            col = self.file.read_row_group(rg, columns=[self.value_column]).column(0).to_pylist()
            self._cached = (rg, col)
        value = self._cached[1][i]
        if value is None:
            raise MissingImage(image_id)
        if self.decode_base64:
            return base64.b64decode(value)
        return bytes(value)


def _mimicit_id_column(path: Path) -> str:
    """Otter's image parquet keeps the id as the pandas index; find its column."""
    schema = pq.read_schema(path)
    names = schema.names
    meta = schema.metadata or {}
    if b"pandas" in meta:
        index_cols = json.loads(meta[b"pandas"]).get("index_columns", [])
        for c in index_cols:
            if isinstance(c, str) and c in names:
                return c
    for c in ("id", "image_id", "__index_level_0__"):
        if c in names:
            return c
    raise SyphusError(f"{path}: no image id column (expected the pandas index, 'id' or 'image_id')")


class ShardSource:
    """A directory written by ``syphus export shards``."""

    def __init__(self, root: str | Path, tasks: list[str] | None = None, langs: list[str] | None = None):
        self.root = Path(root)
        mpath = self.root / "manifest.json"
        if not mpath.is_file():
            raise SyphusError(f"{mpath}: shard manifest not found (write it with 'syphus export shards')")
        try:
            self.manifest = ShardManifest.model_validate_json(mpath.read_text(encoding="utf-8"))
        except ValueError as e:
            raise SyphusError(f"{mpath}: invalid shard manifest: {str(e).splitlines()[0]}") from e
        for s in self.manifest.shards:
            for name in (s.instructions, s.images):
                if not (self.root / name).is_file():
                    raise SyphusError(f"{mpath}: lists '{name}' but {self.root / name} does not exist")
        self.tasks = set(tasks) if tasks else None
        self.langs = set(langs) if langs else None
        self._images: OrderedDict[int, _ParquetImages] = OrderedDict()

    def _keep(self, task: str, lang: str) -> bool:
        return (self.tasks is None or task in self.tasks) and (self.langs is None or lang in self.langs)

    def count(self) -> int:
        if self.tasks is None and self.langs is None:
            return self.manifest.rows
        n = 0
        for s in self.manifest.shards:
            t = pq.read_table(self.root / s.instructions, columns=["task", "lang"])
            n += sum(
                self._keep(a, b)
                for a, b in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True)
            )
        return n

    def records(self) -> Iterator[Record]:
        for part, s in enumerate(self.manifest.shards):
            f = pq.ParquetFile(self.root / s.instructions)
            for rg in range(f.num_row_groups):
                for row in f.read_row_group(rg).to_pylist():
                    if not self._keep(row["task"], row["lang"]):
                        continue
                    context = [
                        Example(c["instruction"], c["answer"], list(c["image_ids"] or []))
                        for c in (row.get("context") or [])
                    ]
                    yield Record(
                        id=row["id"],
                        media=row["media"],
                        query=Example(row["instruction"], row["answer"], list(row["image_ids"] or [])),
                        context=context,
                        part=part,
                    )

    def image(self, part: int, image_id: str) -> bytes:
        if part not in self._images:
            path = self.root / self.manifest.shards[part].images
            self._images[part] = _ParquetImages(path, "image_id", "bytes", decode_base64=False)
            while len(self._images) > 2:
                self._images.popitem(last=False)
        self._images.move_to_end(part)
        return self._images[part].get(image_id)


class MimicitSource:
    """Original MIMIC-IT files: instructions JSON, images parquet (base64), optional train JSON.

    The instructions file is one JSON document, so it is parsed whole (as Otter does); the
    images are read one row group at a time.
    """

    def __init__(self, ds: MixDataset, media: str):
        from curation.jsonfiles import read_json

        self.media = media
        path = Path(ds.mimicit_path)
        raw = read_json(path, what="MIMIC-IT instructions file")
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
            raise SyphusError(f"{path}: expected {{'meta': ..., 'data': {{id: record}}}}")
        self.data: dict[str, Example] = {}
        for ins_id, rec in raw["data"].items():
            if not isinstance(rec, dict):
                raise SyphusError(f"{path}: record '{ins_id}' is not an object")
            for key in ("instruction", "answer"):
                if not isinstance(rec.get(key), str):
                    raise SyphusError(f"{path}: record '{ins_id}': field '{key}' missing or not a string")
            self.data[ins_id] = Example(
                rec["instruction"], rec["answer"], [str(x) for x in rec.get("image_ids") or []]
            )
        self.order: list[str]
        self.related: dict[str, list[str]] = {}
        if ds.train_config_path:
            tpath = Path(ds.train_config_path)
            train = read_json(tpath, what="MIMIC-IT train config")
            if not isinstance(train, dict):
                raise SyphusError(f"{tpath}: expected {{instruction id: [related ids]}}")
            self.related = {k: list(v or []) for k, v in train.items()}
            self.order = list(train)
        else:
            self.order = list(self.data)
        self.images_path = Path(ds.images_path) if ds.images_path else None
        if self.images_path is not None and not self.images_path.is_file():
            raise SyphusError(f"{self.images_path}: images parquet not found")
        self._images: _ParquetImages | None = None
        self.path = path

    def count(self) -> int:
        return len(self.order)

    def records(self) -> Iterator[Record]:
        for ins_id in self.order:
            q = self.data.get(ins_id)
            if q is None:
                # A train-config id absent from the instructions: surfaces as a counted skip.
                yield Record(id=ins_id, media="missing", query=Example("", "", []), context=[])
                continue
            context = [self.data[c] for c in self.related.get(ins_id, []) if c in self.data]
            media = self.media if q.image_ids or self.media == "none" else "none"
            yield Record(id=ins_id, media=media, query=q, context=context)

    def image(self, part: int, image_id: str) -> bytes:
        if self.images_path is None:
            raise MissingImage(image_id)
        if self._images is None:
            col = _mimicit_id_column(self.images_path)
            self._images = _ParquetImages(self.images_path, col, "base64", decode_base64=True)
        return self._images.get(image_id)


def _select(n: int, k: int, rng: random.Random) -> Iterator[bool]:
    """Knuth's selection sampling: exactly ``k`` of ``n`` positions, in order, O(1) memory."""
    chosen = 0
    for seen in range(n):
        take = rng.random() * (n - seen) < (k - chosen)
        chosen += take
        yield take


@dataclass
class StreamOptions:
    batch_size: int = 1
    seed: int = 0
    prompt_format: str = "otter"
    max_length: int = 2048
    resample_frames: int = 8
    max_context: int | None = None
    supervise_context: bool = True
    shuffle_buffer: int = 1024
    image_size_check: bool = True


@dataclass
class _Dataset:
    group: str
    name: str
    source: ShardSource | MimicitSource
    count: int
    num_samples: int


@dataclass
class SkipLog:
    counts: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.messages.append(message)


class MixStream(torch.utils.data.IterableDataset):
    """An endless, seeded stream of collated micro-batches for one rank.

    ``image_processor`` maps a list of PIL images to ``[N, C, H, W]``; ``tokenizer`` and
    ``special`` come from the model (see ``trainer.prompting.SpecialTokens``).
    """

    def __init__(
        self,
        mix: MixConfig,
        *,
        tokenizer,
        special,
        image_processor: Callable,
        options: StreamOptions | None = None,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ):
        super().__init__()
        self.options = options or StreamOptions()
        self.rank, self.world_size = rank, world_size
        self.start_batch = start_batch
        self.tokenizer, self.special, self.image_processor = tokenizer, special, image_processor
        self.builder = PromptBuilder(tokenizer, special, self.options.prompt_format)
        self.datasets: list[_Dataset] = []
        for group, name, ds in mix.datasets():
            if ds.shards_path:
                source: ShardSource | MimicitSource = ShardSource(ds.shards_path, ds.tasks, ds.langs)
            else:
                source = MimicitSource(ds, MEDIA_BY_GROUP[group])
            count = source.count()
            wanted = count if ds.num_samples == -1 else ds.num_samples
            if count == 0 and wanted > 0:
                raise SyphusError(f"mix dataset {group}.{name}: no instructions to sample from")
            self.datasets.append(_Dataset(group, name, source, count, wanted))
        if self.epoch_size == 0:
            raise SyphusError("the mix selects no samples (every dataset is empty or has num_samples: 0)")

    @property
    def epoch_size(self) -> int:
        """Samples in one pass over the mix after ``num_samples`` sampling."""
        return sum(d.num_samples for d in self.datasets)

    @property
    def groups(self) -> list[str]:
        return sorted({d.group for d in self.datasets})

    # -- layer 1: the global record order --------------------------------------------------
    def _sampled(self, index: int, rng: random.Random) -> Iterator[Record]:
        d = self.datasets[index]
        full, rest = divmod(d.num_samples, d.count) if d.count else (0, 0)
        for _ in range(full):
            for r in d.source.records():
                r.source = index
                yield r
        if rest:
            for r, take in zip(d.source.records(), _select(d.count, rest, rng), strict=False):
                if take:
                    r.source = index
                    yield r

    def epoch_records(self, epoch: int) -> Iterator[Record]:
        """One epoch of records in the global order shared by all ranks."""
        rng = random.Random(f"syphus-mix:{self.options.seed}:{epoch}")
        streams = [
            self._sampled(i, random.Random(f"{self.options.seed}:{epoch}:{i}"))
            for i in range(len(self.datasets))
        ]
        left = [d.num_samples for d in self.datasets]
        buffer: list[Record] = []
        size = max(1, self.options.shuffle_buffer)
        total = sum(left)
        while total:
            pick = rng.random() * total
            i = 0
            while pick >= left[i]:
                pick -= left[i]
                i += 1
            left[i] -= 1
            total -= 1
            buffer.append(next(streams[i]))
            if len(buffer) >= size:
                j = rng.randrange(len(buffer))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def records(self) -> Iterator[Record]:
        epoch = 0
        while True:
            yield from self.epoch_records(epoch)
            epoch += 1

    # -- layer 2: this rank's micro-batches ------------------------------------------------
    def _owned_batches(self, worker: int, n_workers: int) -> Iterator[tuple[int, list[Record]]]:
        bs = self.options.batch_size
        chunk: list[Record] = []
        g = 0  # global micro-batch index
        for rec in self.records():
            chunk.append(rec)
            if len(chunk) < bs:
                continue
            if g % self.world_size == self.rank:
                k = g // self.world_size
                if k >= self.start_batch and k % n_workers == worker:
                    yield k, chunk
            chunk = []
            g += 1

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for k, records in self._owned_batches(worker, n_workers):
            yield self.make_batch(k, records)

    def make_batch(self, index: int, records: list[Record]) -> Batch:
        log = SkipLog()
        samples = []
        for rec in records:
            s = self.encode(rec, log)
            if s is not None:
                samples.append(s)
        if not samples:
            ids = [self.special.bos_id if self.special.bos_id is not None else self.special.pad_id]
            samples = [EncodedSample(ids, [IGNORE_INDEX], None)]
        batch = collate(samples, self.special.pad_id)
        batch.index, batch.skipped, batch.warnings = index, log.counts, log.messages
        return batch

    # -- one record -> one encoded sample --------------------------------------------------
    def _turns(self, rec: Record) -> list[tuple[Example, int]]:
        context = rec.context
        if self.options.max_context is not None:
            context = context[: self.options.max_context]
        out = []
        for ex in [*context, rec.query]:
            if rec.media == "image":
                n = len(ex.image_ids)
            elif rec.media == "video":
                n = 1 if ex.image_ids else 0
            else:
                n = 0
            out.append((ex, n))
        return out

    def encode(self, rec: Record, log: SkipLog) -> EncodedSample | None:
        d = self.datasets[rec.source]
        where = f"{d.group}.{d.name} record {rec.id}"
        if rec.media == "missing":
            log.add(
                "missing_instruction", f"{where}: id in the train config but not in the instructions file"
            )
            return None
        turns = self._turns(rec)
        opt = self.options
        while True:
            enc = self.builder.encode(
                [Turn(ex.instruction, ex.answer, n) for ex, n in turns],
                supervise_context=opt.supervise_context,
            )
            if len(enc.input_ids) <= opt.max_length or len(turns) == 1:
                break
            turns = turns[1:]  # drop the oldest in-context example first
        if len(enc.input_ids) > opt.max_length:
            enc.input_ids, enc.labels = enc.input_ids[: opt.max_length], enc.labels[: opt.max_length]
            if enc.n_supervised == 0:
                log.add("too_long", f"{where}: prompt longer than max_length={opt.max_length}")
                return None
        vision = None
        if any(n for _, n in turns):
            try:
                vision = self._vision(rec, turns)
            except MissingImage as e:
                log.add("missing_image", f"{where}: image id '{e.args[0]}' not found")
                return None
            except (OSError, ValueError, SyntaxError) as e:
                log.add("corrupt_image", f"{where}: image cannot be decoded ({type(e).__name__}: {e})")
                return None
        return EncodedSample(enc.input_ids, enc.labels, vision, group=d.group, dataset=d.name, id=rec.id)

    def _decode(self, rec: Record, image_id: str) -> Image.Image:
        raw = self.datasets[rec.source].source.image(rec.part, image_id)
        with Image.open(io.BytesIO(raw)) as im:
            return im.convert("RGB")

    def _vision(self, rec: Record, turns: list[tuple[Example, int]]) -> torch.Tensor:
        """``[T, F, C, H, W]``: one T slot per ``<image>`` token, frames on F for video."""
        slots: list[list[Image.Image]] = []
        for ex, n in turns:
            if n == 0:
                continue
            if rec.media == "video":
                picks = resample_frames(len(ex.image_ids), self.options.resample_frames)
                slots.append([self._decode(rec, ex.image_ids[i]) for i in picks])
            else:
                slots.extend([self._decode(rec, i)] for i in ex.image_ids)
        frames = max(len(s) for s in slots)
        flat = [im for s in slots for im in s]
        pixels = self.image_processor(flat)
        out = torch.zeros((len(slots), frames, *pixels.shape[1:]), dtype=pixels.dtype)
        pos = 0
        for t, s in enumerate(slots):
            out[t, : len(s)] = pixels[pos : pos + len(s)]
            pos += len(s)
        return out


def resample_frames(n: int, k: int) -> list[int]:
    """``k`` frame indices spread evenly over ``n`` frames (repeats when ``n < k``)."""
    if n <= 0:
        return []
    if k <= 0:
        raise ValueError("resample_frames must be positive")
    return [int(round(x)) for x in np.linspace(0, n - 1, k)]
