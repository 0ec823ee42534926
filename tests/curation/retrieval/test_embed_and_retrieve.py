"""Embedding cache, i2i / t2t retrieval, exclusions and bad inputs, on real models and real FAISS."""

from __future__ import annotations

import numpy as np
import pytest

from curation.context import ContextConfig, assign_context_sets
from curation.embed.models import load_embedder
from curation.embed.pipeline import embed_corpus
from curation.store import InstructionRow
from schemas.errors import SyphusError
from tests.curation.retrieval.conftest import draw


@pytest.fixture(scope="module")
def effnet():
    return load_embedder("effnet:lite0")


def test_embedding_cache_is_reused_and_keyed_by_content(shapes_corpus, effnet):
    c = shapes_corpus
    first = embed_corpus(c, effnet, "image", batch_size=4, workers=1)
    # seven ids, six distinct byte strings: the copy shares its vector
    assert (first.total, first.embedded, first.cached) == (6, 6, 0)
    again = embed_corpus(c, effnet, "image", batch_size=4, workers=1)
    assert (again.embedded, again.cached) == (0, 6)
    run = c.start_run("test more")
    with c.image_writer(run) as w:
        w.add("img_new", draw("black", "circle", offset=10))
    c.finish_run(run)
    third = embed_corpus(c, effnet, "image", batch_size=4, workers=0)
    assert (third.embedded, third.cached) == (1, 6)
    keys, vecs = c.load_vectors(effnet.name, "image")
    assert vecs.shape == (7, 1280)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-2)


def test_worker_decoding_matches_in_process_decoding(shapes_corpus, effnet, tmp_path):
    from curation.embed.pipeline import image_batches

    items = shapes_corpus.image_items()
    a = np.concatenate([v for _, v in image_batches(effnet, items, batch_size=4, workers=2)])
    b = np.concatenate([v for _, v in image_batches(effnet, items, batch_size=3, workers=0)])
    assert np.allclose(a, b, atol=1e-4)


def _context(c, run_id):
    rows = c.con.execute(
        "SELECT query_id, rank, related_id, score FROM context_sets WHERE run_id = ? ORDER BY query_id, rank",
        [run_id],
    ).fetchall()
    out: dict[str, list[tuple[str, float]]] = {}
    for q, _, r, s in rows:
        out.setdefault(q, []).append((r, s))
    return out


def test_identical_images_retrieve_each_other_first(shapes_corpus):
    c = shapes_corpus
    cfg = ContextConfig(policy="i2i", k=3, near_dup=None, seed=1)
    res = assign_context_sets(c, cfg, workers=1)
    ctx = _context(c, res.run_id)
    for q in ("img0_q1", "img0_q2"):
        top_two = {r for r, _ in ctx[q][:2]}
        assert top_two == {"img0_copy_q1", "img0_copy_q2"}
        assert ctx[q][0][1] == pytest.approx(1.0, abs=1e-3)
    for q in ("img0_copy_q1", "img0_copy_q2"):
        assert {r for r, _ in ctx[q][:2]} == {"img0_q1", "img0_q2"}
    # the run is recorded with its index report, and export sees it through current_context
    summary = c.con.execute("SELECT summary FROM runs WHERE id = ?", [res.run_id]).fetchone()[0]
    assert '"kind": "flat"' in summary
    assert c.context_map(["img3_q1"])["img3_q1"] == [r for r, _ in ctx["img3_q1"]]


def test_exclusions_hold(shapes_corpus):
    c = shapes_corpus
    res = assign_context_sets(c, ContextConfig(policy="i2i", k=4, near_dup=0.99), workers=1)
    ctx = _context(c, res.run_id)
    images = dict(c.con.execute("SELECT ins_id, image_id FROM instruction_images").fetchall())
    for q, rel in ctx.items():
        assert len(rel) == 4
        for r, s in rel:
            assert r != q  # never the query itself
            assert images[r] != images[q]  # never a pair on the same image
            assert s < 0.99  # near-duplicates (here: the identical copy) are gone
        if q.startswith("img0_") or q.startswith("img0_copy_"):
            assert not any(r.startswith("img0") for r, _ in rel)
    # same-task restriction
    res2 = assign_context_sets(c, ContextConfig(policy="t2t", k=3, same_task=True))
    tasks = dict(c.con.execute("SELECT id, task FROM instructions").fetchall())
    for q, rel in _context(c, res2.run_id).items():
        assert all(tasks[r] == tasks[q] for r, _ in rel)
    assert set(res2.reports) == {"COLOR", "SHAPE"}


def test_retrieval_is_deterministic_for_a_seed(shapes_corpus):
    c = shapes_corpus
    cfg = ContextConfig(policy="mixed", k=3, image_weight=0.7, seed=5)
    a = _context(c, assign_context_sets(c, cfg, workers=1).run_id)
    b = _context(c, assign_context_sets(c, cfg, workers=1).run_id)
    assert a == b


def test_t2t_relates_similar_instructions(tmp_path):
    from tests.curation.retrieval.conftest import make_corpus

    texts = {
        "a1": "How many dogs are playing in the park?",
        "a2": "Count the dogs that are running around the park.",
        "b1": "What is the chemical formula of table salt?",
        "b2": "Which elements make up sodium chloride?",
        "c1": "Describe the weather in the sky above the city.",
        "c2": "Is it raining or sunny over the town?",
    }
    rows = [InstructionRow(id=k, task="T", instruction=v, answer="ok") for k, v in texts.items()]
    c = make_corpus(tmp_path / "c", {}, rows)
    res = assign_context_sets(c, ContextConfig(policy="t2t", k=1, near_dup=None))
    top = {q: rel[0][0] for q, rel in _context(c, res.run_id).items()}
    assert top == {"a1": "a2", "a2": "a1", "b1": "b2", "b2": "b1", "c1": "c2", "c2": "c1"}
    with pytest.raises(SyphusError, match="no instruction has images"):
        assign_context_sets(c, ContextConfig(policy="i2i", k=1))
    c.close()


def test_bad_inputs_write_nothing(shapes_corpus, tmp_path, monkeypatch):
    c = shapes_corpus
    runs_before = c.con.execute("SELECT count(*) FROM runs").fetchone()[0]
    with pytest.raises(SyphusError, match="unknown model spec"):
        load_embedder("clip:foo")
    with pytest.raises(SyphusError, match="unknown open_clip model"):
        load_embedder("open_clip:NoSuchNet:openai")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SyphusError, match="not on disk"):
        load_embedder("open_clip:ViT-B-32:openai")
    with pytest.raises(SyphusError, match="no sentence-transformers folder"):
        load_embedder(f"st:{tmp_path / 'nope'}")
    with pytest.raises(SyphusError, match="larger than the 13 candidates"):
        assign_context_sets(c, ContextConfig(policy="t2t", k=20))
    with pytest.raises(SyphusError, match="unknown policy"):
        assign_context_sets(c, ContextConfig(policy="x2x"))
    assert c.con.execute("SELECT count(*) FROM context_sets").fetchone()[0] == 0
    # the t2t attempt embedded texts (a finished, reusable step) but wrote no retrieve run
    assert c.con.execute("SELECT count(*) FROM runs WHERE command LIKE 'retrieve%'").fetchone()[0] == 0
    assert c.con.execute("SELECT count(*) FROM runs").fetchone()[0] >= runs_before


def test_open_clip_local_checkpoint_and_random_weights(tmp_path, shapes_corpus):
    import open_clip
    import torch

    model = open_clip.create_model("RN50", pretrained=None)
    ckpt = tmp_path / "rn50.pt"
    torch.save(model.state_dict(), ckpt)
    emb = load_embedder(f"open_clip:RN50:{ckpt}")
    assert emb.name == f"open_clip:RN50:{ckpt.resolve()}"
    stats = embed_corpus(shapes_corpus, emb, "image", batch_size=8, workers=0)
    assert stats.embedded == 6
    t = emb.encode_texts(["a red circle", "a blue square"])
    assert t.shape == (2, emb.dim)
    assert np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-4)
