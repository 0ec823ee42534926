"""Images in the request (issue 12): each annotation's images reach its own request, keyed by
content, costed before sending, refused for text-only models, skipped when broken."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from PIL import Image

from syphus.engine.images import anthropic_image_tokens, openai_image_tokens

ECHO = "syphus.testing.echo_task:EchoTask"


def draw(folder: Path, name: str, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.new("RGB", size, colour).save(path, quality=95)
    return path


def notes(path: Path, items: list[tuple[str, list[str]]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for nid, ids in items:
            f.write(json.dumps({"id": nid, "text": f"note {nid}", "image_ids": ids}) + "\n")
    return path


def cli(capsys, *argv) -> tuple[int, str]:
    """``syphus ARGV`` in this process: (exit code, stdout + stderr)."""
    from syphus.cli import main

    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out + out.err


def answers(corpus: Path) -> dict[str, str]:
    """source annotation id -> the answer stating what images the server saw."""
    con = duckdb.connect(str(corpus / "corpus.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT source_id, answer FROM instructions WHERE answer LIKE 'IMAGE 1:%'"
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


@pytest.fixture
def corpus_with_images(tmp_path, capsys):
    """A corpus holding a red 64x48 PNG, a green 80x60 PNG and a blue 2000x1000 JPEG."""
    imgs = tmp_path / "imgs"
    draw(imgs, "RED.png", (64, 48), (255, 0, 0))
    draw(imgs, "GREEN.png", (80, 60), (0, 255, 0))
    draw(imgs, "BLUE.jpg", (2000, 1000), (0, 0, 255))
    corpus = tmp_path / "c"
    code, out = cli(capsys, "import", "images", imgs, "--corpus", corpus)
    assert code == 0, out
    return corpus


def gen(capsys, srv, ann: Path, corpus: Path, *extra) -> tuple[int, str]:
    return cli(capsys, "generate", "--task", ECHO, "--annotations", ann, "--corpus", corpus, "--model", "vlm",
               "--api-base", srv.base_url, "--no-progress", "--max-tokens", "64", *extra)  # fmt: skip


def test_each_request_carries_its_own_images_in_order(serve, tmp_path, capsys, corpus_with_images):
    srv = serve()
    ann = notes(tmp_path / "n.jsonl", [("a", ["RED"]), ("b", ["BLUE"]), ("pair", ["GREEN", "RED"])])
    code, out = gen(capsys, srv, ann, corpus_with_images, "--with-images")
    assert code == 0, out
    got = answers(corpus_with_images)
    assert got["a"] == "IMAGE 1: 64x48 mean=(255,0,0)"
    # 2000x1000 downscaled to the default longest side of 768 before sending
    assert got["b"].startswith("IMAGE 1: 768x384 mean=(0,0,25")
    assert (
        got["pair"].startswith("IMAGE 1: 80x60 mean=(0,255,0)")
        and "IMAGE 2: 64x48 mean=(255,0,0)" in got["pair"]
    )
    # without --with-images the same annotations are text-only requests, asked anew
    srv.state.requests.clear()
    code, out = gen(capsys, srv, ann, tmp_path / "c2")
    assert code == 0 and not answers(tmp_path / "c2")


def test_max_side_option_sets_the_sent_size(serve, tmp_path, capsys, corpus_with_images):
    srv = serve()
    ann = notes(tmp_path / "n.jsonl", [("b", ["BLUE"])])
    code, out = gen(capsys, srv, ann, corpus_with_images, "--with-images", "--image-max-side", "200")
    assert code == 0, out
    assert answers(corpus_with_images)["b"].startswith("IMAGE 1: 200x100 ")


def test_same_image_reimported_is_not_paid_again_and_a_changed_one_is(
    serve, tmp_path, capsys, corpus_with_images
):
    srv = serve()
    corpus = corpus_with_images
    code, out = gen(capsys, srv, notes(tmp_path / "n1.jsonl", [("a", ["RED"])]), corpus, "--with-images")
    assert code == 0, out
    assert srv.state.total == 1
    # the same bytes imported again under another id: same request key, nothing sent
    shutil.copy(tmp_path / "imgs" / "RED.png", draw(tmp_path / "again", "x.png", (1, 1), (0, 0, 0)))
    (tmp_path / "again" / "x.png").rename(tmp_path / "again" / "RED_AGAIN.png")
    assert cli(capsys, "import", "images", tmp_path / "again", "--corpus", corpus)[0] == 0
    code, out = gen(
        capsys, srv, notes(tmp_path / "n2.jsonl", [("a", ["RED_AGAIN"])]), corpus, "--with-images"
    )
    assert code == 0, out
    assert srv.state.total == 1 and "already done" in out
    # a changed image (one pixel differs) under the old annotation: a new key, asked once
    im = Image.new("RGB", (64, 48), (255, 0, 0))
    im.putpixel((0, 0), (0, 0, 0))
    (tmp_path / "changed").mkdir()
    im.save(tmp_path / "changed" / "RED_V2.png")
    assert cli(capsys, "import", "images", tmp_path / "changed", "--corpus", corpus)[0] == 0
    code, out = gen(capsys, srv, notes(tmp_path / "n3.jsonl", [("a", ["RED_V2"])]), corpus, "--with-images")
    assert code == 0, out
    assert srv.state.total == 2


def _corrupt_in_shard(corpus: Path, image_id: str) -> None:
    """Flip bytes of one image inside its shard, as disk damage would."""
    con = duckdb.connect(str(corpus / "corpus.duckdb"), read_only=True)
    shard, off, n = con.execute(
        "SELECT b.shard, b.byte_offset, b.nbytes FROM images i JOIN blobs b USING (sha256) WHERE i.id = ?",
        [image_id],
    ).fetchone()
    con.close()
    with open(corpus / "images" / shard, "r+b") as f:
        f.seek(off + n // 2)
        f.write(b"\x00" * min(16, n // 4))


def test_missing_or_corrupt_image_skips_its_annotation_before_any_request(
    serve, tmp_path, capsys, corpus_with_images
):
    srv = serve()
    _corrupt_in_shard(corpus_with_images, "GREEN")
    ann = notes(tmp_path / "n.jsonl", [("ok", ["RED"]), ("gone", ["NOPE"]), ("bad", ["RED", "GREEN"])])
    code, out = gen(capsys, srv, ann, corpus_with_images, "--with-images", "--dry-run")
    assert code == 0 and srv.state.total == 0
    assert "skipped 1: image not in the corpus (first: " in out and "gone: image 'NOPE'" in out
    assert "skipped 1: image corrupt in the corpus (first: " in out and "bad: image 'GREEN'" in out
    code, out = gen(capsys, srv, ann, corpus_with_images, "--with-images")
    assert code == 0, out
    assert srv.state.total == 1 and set(answers(corpus_with_images)) == {"ok"}
    assert "image corrupt in the corpus" in out and "image not in the corpus" in out


@pytest.mark.parametrize(
    ("model", "extra"),
    [("local/smollm2-135m", []), ("gpt-3.5-turbo", ["--backend", "litellm"])],
)
def test_text_only_model_is_refused_before_any_request(tmp_path, capsys, corpus_with_images, model, extra):
    ann = notes(tmp_path / "n.jsonl", [("a", ["RED"])])
    code, out = cli(capsys, "generate", "--task", ECHO, "--annotations", ann, "--corpus", corpus_with_images,
                    "--model", model, "--with-images", "--no-progress", *extra)  # fmt: skip
    assert code == 1
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "cannot take images" in errors[0] and "drop --with-images" in errors[0]
    con = duckdb.connect(str(corpus_with_images / "corpus.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM requests").fetchone()[0] == 0
    con.close()


def test_published_token_rules():
    # OpenAI's worked examples: 1024x1024 high = 765; 2048x4096 high = 1105; low = 85
    assert openai_image_tokens(1024, 1024, "high") == 765
    assert openai_image_tokens(2048, 4096, "high") == 1105
    assert openai_image_tokens(4096, 8192, "low") == 85
    # Anthropic: 1000x1000 -> 1334; 200x200 -> 54; a 3000x1000 image is first cut to 1568 long side
    assert anthropic_image_tokens(1000, 1000) == 1334
    assert anthropic_image_tokens(200, 200) == 54
    assert anthropic_image_tokens(3000, 1000) == anthropic_image_tokens(1568, 523)


def _dry(capsys, srv, tmp_path, corpus, model, *extra) -> tuple[dict[str, str], str]:
    ann = notes(tmp_path / "n.jsonl", [("a", ["RED"]), ("b", ["BLUE"])])
    code, out = cli(capsys, "generate", "--task", ECHO, "--annotations", ann, "--corpus", corpus, "--model", model,
                    "--api-base", srv.base_url, "--with-images", "--dry-run", "--max-tokens", "64", *extra)  # fmt: skip
    assert code == 0, out
    rows = {}
    for ln in out.splitlines():
        cells = [c.strip() for c in ln.strip("│|").split("│")]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    return rows, out


def test_dry_run_counts_image_tokens_by_the_providers_rule(serve, tmp_path, capsys, corpus_with_images):
    srv = serve()
    # OpenAI, detail auto counted as high: 64x48 -> 1 tile = 255; 2000x1000 sent as 768x384 -> 2 tiles = 425
    rows, out = _dry(capsys, srv, tmp_path, corpus_with_images, "gpt-4o")
    assert rows["images to send"] == "2" and rows["est image tokens"] == str(255 + 425)
    assert "image tokens counted by OpenAI tiles" in out and "detail auto counted as high" in out
    rows, out = _dry(capsys, srv, tmp_path, corpus_with_images, "gpt-4o", "--image-detail", "low")
    assert rows["est image tokens"] == str(85 + 85)
    # Anthropic: default longest side 1092, so 2000x1000 is sent as 1092x546: ceil(1092*546/750) = 795;
    # 64x48: ceil(3072/750) = 5
    rows, out = _dry(capsys, srv, tmp_path, corpus_with_images, "anthropic/claude-3-5-sonnet-20241022")
    assert rows["est image tokens"] == str(795 + 5)
    assert "image tokens counted by Anthropic: ceil(width*height/750)" in out
    assert srv.state.total == 0


def test_server_refuses_an_undecodable_image(serve):
    import httpx

    srv = serve()
    bad = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"not a png").decode()}},
    ]}]}  # fmt: skip
    r = httpx.post(f"{srv.base_url}/chat/completions", json=bad)
    assert r.status_code == 400 and "Invalid image" in r.text


def test_a_retry_does_not_encode_the_image_again(serve, tmp_path, corpus_with_images, monkeypatch):
    from syphus.engine.images import ImageSource
    from syphus.engine.pipeline import GenerateOptions, generate
    from syphus.testing.echo_task import EchoTask

    calls = []
    encode = ImageSource._encode
    monkeypatch.setattr(ImageSource, "_encode", lambda self, *a: calls.append(1) or encode(self, *a))
    srv = serve(first_faults=["500", "429", "500"])
    ann = notes(tmp_path / "n.jsonl", [("b", ["BLUE"]), ("b2", ["BLUE"])])
    opts = GenerateOptions(model="vlm", api_base=srv.base_url, max_tokens=64, with_images=True)
    s = generate(EchoTask(), [ann], corpus_with_images, opts)
    assert s["done"] == 2 and s["retries"] == 6
    assert len(calls) == 1  # one downscale for the image shared by two annotations and six retries


def test_anthropic_batch_sends_base64_image_blocks(serve, tmp_path, capsys, corpus_with_images):
    srv = serve(batch_delay=0.1)
    ann = notes(tmp_path / "n.jsonl", [("a", ["RED"]), ("b", ["GREEN"])])
    code, out = cli(capsys, "generate", "--task", ECHO, "--annotations", ann, "--corpus", corpus_with_images,
                    "--model", "anthropic/claude-3-5-sonnet-20241022", "--api-base", srv.base_url, "--batch",
                    "--poll-interval", "0.05", "--with-images", "--no-progress", "--max-tokens", "64")  # fmt: skip
    assert code == 0, out
    (batch,) = srv.state.anthropic_batches.values()
    first = next(r for r in batch["requests"] if "note a" in json.dumps(r))
    params = first["params"]
    assert params["system"] and all(m["role"] != "system" for m in params["messages"])
    blocks = params["messages"][-1]["content"]
    assert [b["type"] for b in blocks] == ["text", "text", "image"]
    src = blocks[2]["source"]
    assert src["type"] == "base64" and src["media_type"] == "image/png"
    assert base64.b64decode(src["data"]) == (tmp_path / "imgs" / "RED.png").read_bytes()
    got = answers(corpus_with_images)
    assert got == {"a": "IMAGE 1: 64x48 mean=(255,0,0)", "b": "IMAGE 1: 80x60 mean=(0,255,0)"}


def test_openai_batch_sends_data_urls_with_detail(serve, tmp_path, capsys, corpus_with_images):
    srv = serve(batch_delay=0.1)
    ann = notes(tmp_path / "n.jsonl", [("a", ["RED"])])
    code, out = cli(capsys, "generate", "--task", ECHO, "--annotations", ann, "--corpus", corpus_with_images,
                    "--model", "openai/gpt-4o-mini", "--api-base", srv.base_url, "--batch", "--poll-interval", "0.05",
                    "--with-images", "--image-detail", "low", "--no-progress", "--max-tokens", "64")  # fmt: skip
    assert code == 0, out
    (b,) = srv.state.batches.values()
    line = json.loads(srv.state.files[b["input_file_id"]].decode().splitlines()[0])
    part = line["body"]["messages"][-1]["content"][-1]
    assert part["type"] == "image_url" and part["image_url"]["detail"] == "low"
    assert part["image_url"]["url"].startswith("data:image/png;base64,")
    assert answers(corpus_with_images) == {"a": "IMAGE 1: 64x48 mean=(255,0,0)"}


def _done_keys(corpus: Path) -> set[str]:
    from curation.store import Corpus
    from syphus.engine.requestlog import RequestLog

    with Corpus(corpus) as c:  # opening replays the journal the killed run left
        RequestLog(c).close()
        return {r[0] for r in c.con.execute("SELECT key FROM requests WHERE status='done'").fetchall()}


def _server_keys(corpus: Path, ann: Path, base_url: str) -> dict[str, str]:
    """request key -> the key the test server counts that request under (its body's hash)."""
    from curation.store import Corpus
    from syphus.engine.images import openai_messages
    from syphus.engine.pipeline import GenerateOptions, load_annotations, plan_requests
    from syphus.testing.echo_task import EchoTask
    from syphus.testing.openai_server import body_key

    opts = GenerateOptions(model="vlm", api_base=base_url, max_tokens=64, with_images=True)
    task = EchoTask()
    with Corpus(corpus) as c:
        src = opts.image_source(c)
        reqs, _ = plan_requests(task, load_annotations(task, [ann], None), opts, src)
        return {r.key: body_key({"model": "vlm", "messages": openai_messages(r.messages, src), **opts.params()})
                for r in reqs}  # fmt: skip


@pytest.mark.slow
def test_kill9_with_images_and_resume_loses_nothing_and_pays_nothing_twice(serve, tmp_path, capsys):
    srv = serve(latency="lognormal:0.3:0.5")
    imgs = tmp_path / "imgs"
    n = 120
    colour = {i: (i * 2 % 256, 255 - i * 2 % 256, 7 * i % 256) for i in range(n)}
    for i in range(n):
        draw(imgs, f"IMG_{i}.png", (32 + i % 5, 24), colour[i])
    corpus = tmp_path / "c"
    assert cli(capsys, "import", "images", imgs, "--corpus", corpus)[0] == 0
    ann = notes(tmp_path / "n.jsonl", [(f"n{i}", [f"IMG_{i}"]) for i in range(n)])
    server_key = _server_keys(corpus, ann, srv.base_url)
    cmd = [sys.executable, "-m", "syphus.cli", "generate", "--task", ECHO, "--annotations", str(ann),
           "--corpus", str(corpus), "--model", "vlm", "--api-base", srv.base_url, "--concurrency", "16",
           "--no-progress", "--max-tokens", "64", "--with-images"]  # fmt: skip
    snapshots = []
    for _ in range(2):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start, deadline = srv.state.total, time.time() + 120
        while time.time() < deadline and srv.state.total < start + 25:  # killed mid-run, once replies flow
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        finished = _done_keys(corpus)
        snapshots.append({k: srv.state.requests[server_key[k]] for k in finished})
    assert 0 < len(snapshots[-1]) < n
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(_done_keys(corpus)) == n
    # a reply journaled before a kill is never asked for again
    assert all(srv.state.requests[server_key[k]] == c for snap in snapshots for k, c in snap.items())
    got = answers(corpus)  # and every annotation has its own image's answer
    assert got == {
        f"n{i}": f"IMAGE 1: {32 + i % 5}x24 mean=({c[0]},{c[1]},{c[2]})" for i, c in colour.items()
    }
