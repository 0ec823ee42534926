"""The trainer's data path: prompts and labels, batching, mix sampling, sharding, bad images."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from schemas.mix import load_mix
from trainer.collate import EncodedSample, collate
from trainer.data import MixStream, StreamOptions, resample_frames
from trainer.model.loss import token_loss
from trainer.prompting import IGNORE_INDEX, PromptBuilder, Turn

from .helpers import draw, row, tiny_processing, write_mimicit, write_shards


@pytest.fixture(scope="module")
def proc():
    return tiny_processing()


def _mix(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mix.yaml"
    p.write_text(text)
    return p


def _stream(mix_path, proc, **kw):
    tok, special, ip = proc
    start = kw.pop("start_batch", 0)
    rank = kw.pop("rank", 0)
    world = kw.pop("world_size", 1)
    return MixStream(
        load_mix(mix_path),
        tokenizer=tok,
        special=special,
        image_processor=ip,
        options=StreamOptions(**kw),
        rank=rank,
        world_size=world,
        start_batch=start,
    )


def _shapes(tmp_path: Path, n: int, name: str = "shards", **kw) -> Path:
    images = {f"img{i}": draw("circle", "red" if i % 2 else "blue") for i in range(n)}
    rows = [
        row(f"S_INS_{i:05d}", "What colour is the shape?", "red" if i % 2 else "blue", [f"img{i}"])
        for i in range(n)
    ]
    return write_shards(tmp_path / name, rows, images, **kw)


# -- prompts and labels -------------------------------------------------------------------------
def test_labels_cover_only_answers_and_their_endofchunk(proc):
    tok, special, _ = proc
    b = PromptBuilder(tok, special)
    enc = b.encode([Turn("What colour?", "red", 1), Turn("What colour is it?", "blue", 1)])
    ids, labels = enc.input_ids, enc.labels
    assert ids.count(special.media_id) == 2
    assert ids.count(special.answer_id) == 2
    supervised = [t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]
    assert supervised == [lab for lab in labels if lab != IGNORE_INDEX]
    text = tok.decode([t for t in supervised if t != special.endofchunk_id])
    assert text.split() == ["red", "blue"]
    assert supervised.count(special.endofchunk_id) == 2
    # the prompt renders as Otter's format
    rendered = tok.decode(ids)
    assert (
        "<image>User: What colour? GPT:<answer> red<|endofchunk|><image>User: What colour is it? GPT:<answer> blue<|endofchunk|>"
        in rendered
    )


def test_text_only_has_no_image_token_and_context_can_be_unsupervised(proc):
    tok, special, _ = proc
    enc = PromptBuilder(tok, special).encode(
        [Turn("Say yes", "yes", 0), Turn("Say no", "no", 0)], supervise_context=False
    )
    assert special.media_id not in enc.input_ids
    sup = [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE_INDEX]
    assert tok.decode([t for t in sup if t != special.endofchunk_id]).strip() == "no"


def test_llama2_format_and_open_query(proc):
    tok, special, _ = proc
    enc = PromptBuilder(tok, special, "llama2").encode([Turn("What is it?", None, 1)])
    assert tok.decode(enc.input_ids).endswith("<image>[INST] What is it? [/INST]<answer>")
    assert enc.n_supervised == 0


def test_all_masked_batch_gives_zero_loss_not_nan():
    logits = torch.randn(2, 5, 11, requires_grad=True)
    labels = torch.full((2, 5), IGNORE_INDEX)
    loss, sums, counts = token_loss(logits, labels)
    loss.backward()
    assert loss.item() == 0.0 and counts.sum() == 0
    assert torch.isfinite(logits.grad).all()


def test_collate_pads_text_images_and_frames():
    a = EncodedSample([5, 6, 7], [IGNORE_INDEX, 6, 7], torch.ones(2, 1, 3, 4, 4), group="IMAGE_TEXT")
    b = EncodedSample([5], [IGNORE_INDEX], torch.full((1, 3, 3, 4, 4), 2.0), group="VIDEO_TEXT")
    c = EncodedSample([5, 6], [IGNORE_INDEX, 6], None, group="TEXT_ONLY")
    batch = collate([a, b, c], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [5, 0, 0], [5, 6, 0]]
    assert batch.labels[1].tolist() == [IGNORE_INDEX] * 3
    assert batch.attention_mask.sum().item() == 6
    assert batch.vision_x.shape == (3, 2, 3, 3, 4, 4)
    assert (batch.vision_x[0, :, 1:] == 1).all()  # a still image repeated along F
    assert (batch.vision_x[2] == 0).all()


def test_resample_frames_evenly():
    assert resample_frames(10, 4) == [0, 3, 6, 9]
    assert resample_frames(2, 4) == [0, 0, 1, 1]


# -- the stream ---------------------------------------------------------------------------------
def test_shard_stream_batches_images_and_labels(tmp_path, proc):
    _shapes(tmp_path, 6)
    mix = _mix(tmp_path, "IMAGE_TEXT:\n  syn:\n    shards_path: shards\n")
    s = _stream(mix, proc, batch_size=3, shuffle_buffer=1)
    it = iter(s)
    b0 = next(it)
    assert b0.vision_x.shape == (3, 1, 1, 3, 32, 32)
    assert b0.groups == ["IMAGE_TEXT"] * 3
    assert sorted(b0.ids + next(it).ids) == [f"S_INS_{i:05d}" for i in range(6)]
    assert b0.index == 0 and not b0.skipped


def test_num_samples_down_and_up_sampling_is_seeded(tmp_path, proc):
    _shapes(tmp_path, 10, name="a")
    _shapes(tmp_path, 4, name="b")
    mix = _mix(
        tmp_path,
        "IMAGE_TEXT:\n  a:\n    shards_path: a\n    num_samples: 6\n  b:\n    shards_path: b\n    num_samples: 10\n",
    )
    s = _stream(mix, proc, seed=3)
    assert s.epoch_size == 16
    recs = list(s.epoch_records(0))
    by_source = Counter(r.source for r in recs)
    assert by_source == {0: 6, 1: 10}
    a_ids = [r.id for r in recs if r.source == 0]
    assert len(set(a_ids)) == 6  # down-sampled without repeats
    b_ids = Counter(r.id for r in recs if r.source == 1)
    assert sorted(b_ids.values()) == [2, 2, 3, 3]  # 2 full passes + 2 seeded extras
    again = [r.id for r in _stream(mix, proc, seed=3).epoch_records(0)]
    assert again == [r.id for r in recs]
    assert [r.id for r in s.epoch_records(1)] != again  # each epoch reshuffles
    other = [r.id for r in _stream(mix, proc, seed=4).epoch_records(0)]
    assert other != again


def test_ranks_and_workers_split_the_stream_and_resume_skips(tmp_path, proc):
    _shapes(tmp_path, 12)
    mix = _mix(tmp_path, "IMAGE_TEXT:\n  syn:\n    shards_path: shards\n")

    def take(n, **kw):
        it = iter(_stream(mix, proc, batch_size=2, seed=1, **kw))
        return [next(it).ids for _ in range(n)]

    whole = take(6)
    r0 = take(3, rank=0, world_size=2)
    r1 = take(3, rank=1, world_size=2)
    assert r0 == whole[0::2] and r1 == whole[1::2]
    assert take(4, start_batch=2) == take(6)[2:]
    loader = torch.utils.data.DataLoader(
        _stream(mix, proc, batch_size=2, seed=1), batch_size=None, num_workers=2
    )
    it = iter(loader)
    assert [next(it).ids for _ in range(6)] == whole
    del it


def test_corrupt_and_missing_images_are_skipped_and_counted(tmp_path, proc):
    images = {"ok": draw(), "bad": b"not an image at all"}
    rows = [
        row("A", "What colour?", "red", ["ok"]),
        row("B", "What colour?", "red", ["bad"]),
        row("C", "What colour?", "red", ["gone"]),
        row("D", "Say hi", "hi", [], media="none"),
    ]
    write_shards(tmp_path / "shards", rows, images)
    mix = _mix(tmp_path, "IMAGE_TEXT:\n  syn:\n    shards_path: shards\n")
    batch = next(iter(_stream(mix, proc, batch_size=4, shuffle_buffer=1)))
    assert sorted(batch.ids) == ["A", "D"]
    assert batch.skipped == {"corrupt_image": 1, "missing_image": 1}
    assert any("'gone'" in w for w in batch.warnings)
    # a batch where every sample is bad is a placeholder with nothing supervised
    write_shards(tmp_path / "bad", [rows[1], rows[2]], images)
    mix2 = _mix(tmp_path, "IMAGE_TEXT:\n  syn:\n    shards_path: bad\n")
    empty = next(iter(_stream(mix2, proc, batch_size=2)))
    assert empty.n_samples == 0 and (empty.labels == IGNORE_INDEX).all()


def test_in_context_examples_go_first_with_their_own_images(tmp_path, proc):
    tok, special, _ = proc
    images = {"q": draw("square", "green"), "c1": draw("circle", "red"), "c2": draw("circle", "blue")}
    ctx = [
        {"id": "C1", "instruction": "Colour?", "answer": "red", "image_ids": ["c1"]},
        {"id": "C2", "instruction": "Colour?", "answer": "blue", "image_ids": ["c2"]},
    ]
    write_shards(tmp_path / "shards", [row("Q", "Colour?", "green", ["q"], context=ctx)], images)
    mix = _mix(tmp_path, "IMAGE_TEXT_IN_CONTEXT:\n  syn:\n    shards_path: shards\n")
    b = next(iter(_stream(mix, proc)))
    assert b.vision_x.shape[:3] == (1, 3, 1)
    assert (b.input_ids[0] == special.media_id).sum() == 3
    assert tok.decode(b.labels[0][b.labels[0] != IGNORE_INDEX]).split("<|endofchunk|>")[:3] == [
        " red",
        " blue",
        " green",
    ]
    # green image last on T: the query's own image
    assert torch.allclose(
        b.vision_x[0, 2, 0],
        proc[2]([__import__("PIL.Image").Image.open(__import__("io").BytesIO(images["q"]))])[0],
    )
    # max_length drops the oldest examples first
    short = next(iter(_stream(mix, proc, max_length=len(b.input_ids[0]) - 1)))
    assert short.vision_x.shape[1] == 2


def test_video_frames_resampled_on_f(tmp_path, proc):
    images = {f"f{i}": draw("circle", "red", where=["left", "middle", "right"][i % 3]) for i in range(7)}
    write_shards(
        tmp_path / "v", [row("V", "Where does it go?", "right", list(images), media="video")], images
    )
    mix = _mix(tmp_path, "VIDEO_TEXT:\n  v:\n    shards_path: v\n")
    b = next(iter(_stream(mix, proc, resample_frames=3)))
    assert b.vision_x.shape[:3] == (1, 1, 3)
    assert (b.input_ids[0] == proc[1].media_id).sum() == 1


def test_mimicit_files_with_train_config(tmp_path, proc):
    images = {"I1": draw("circle", "red"), "I2": draw("square", "blue")}
    records = {
        "LA_INS_1": {"instruction": "Colour?", "answer": "red", "image_ids": ["I1"], "rel_ins_ids": []},
        "LA_INS_2": {"instruction": "Colour?", "answer": "blue", "image_ids": ["I2"], "rel_ins_ids": []},
    }
    write_mimicit(tmp_path, "LA", records, images, train={"LA_INS_1": ["LA_INS_2"], "LA_INS_9": []})
    mix = _mix(
        tmp_path,
        "IMAGE_TEXT_IN_CONTEXT:\n  la:\n    mimicit_path: LA_instructions.json\n    images_path: LA.parquet\n"
        "    train_config_path: LA_train.json\n",
    )
    b = next(iter(_stream(mix, proc, batch_size=2, shuffle_buffer=1)))
    assert b.ids == ["LA_INS_1"]
    assert b.skipped == {"missing_instruction": 1}
    assert b.vision_x.shape[:2] == (1, 2)


def test_text_rows_stream_in_bounded_memory(tmp_path, proc):
    import tracemalloc

    def peak(n):
        rows = [row(f"T{i:06d}", "Say something " * 4, "something", [], media="none") for i in range(n)]
        write_shards(tmp_path / f"t{n}", rows, {}, rows_per_part=500)
        mix = _mix(tmp_path, f"TEXT_ONLY:\n  t:\n    shards_path: t{n}\n")
        s = _stream(mix, proc, shuffle_buffer=8)
        tracemalloc.start()
        for _ in s.epoch_records(0):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(500), peak(5000)
    assert large < 2 * small
