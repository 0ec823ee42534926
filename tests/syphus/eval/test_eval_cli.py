"""``syphus eval`` on a saved tiny Otter, through the command line: the results folder, the YAML
form, resuming, ``eval compare``, and one-line errors for what a user can get wrong."""

from __future__ import annotations

import json

from tests.trainer.train.helpers import run_cli

SHAPES = "tests.syphus.eval.shapes_bench:SHAPES"


def _eval(capsys, *args):
    return run_cli(["eval", "--no-progress", *args], capsys)


def test_eval_writes_the_results_folder(otter_dir, bench_data, tmp_path, capsys):
    out = tmp_path / "results"
    code, stdout, err = _eval(capsys, "--model", str(otter_dir), "--bench", SHAPES, "--data", str(bench_data),
                              "--out", str(out), "--batch-size", "4")  # fmt: skip
    assert code == 0, err
    model_dir = out / f"{otter_dir.parent.name}_model"  # the folder's last two names
    result = json.loads((model_dir / "shapes.json").read_text())
    assert result["bench"] == "shapes" and result["model"] == str(otter_dir)
    assert result["config"]["batch_size"] == 4 and result["config"]["max_new_tokens"] == 6
    assert result["created_at"] and len(result["verdicts"]) == 12
    acc = next(m for m in result["metrics"] if m["name"] == "accuracy" and m["category"] is None)
    assert acc["n"] == 12 and acc["ci95"][0] - 1e-9 <= acc["value"] <= acc["ci95"][1]
    assert "shapes" in stdout and "accuracy" in stdout
    rows = [json.loads(line) for line in (model_dir / "shapes.samples.jsonl").read_text().splitlines()]
    assert [r["sample_id"] for r in rows] == [f"q{i}" for i in range(12)]
    assert rows[1]["question"] == "Is the shape and the shape green?" and len(rows[1]["images"]) == 2
    assert rows[5]["images"] == []  # the text-only question
    for r in rows:
        for p in r["images"]:
            assert (model_dir / p).read_bytes()[:4] == b"\x89PNG"

    # A rerun at another batch size: the answers come from the journal, the files are the same.
    first = (model_dir / "shapes.samples.jsonl").read_text()
    code, _, err = _eval(capsys, "--model", str(otter_dir), "--bench", SHAPES, "--data", str(bench_data),
                         "--out", str(out), "--batch-size", "1")  # fmt: skip
    assert code == 0, err
    assert (model_dir / "shapes.samples.jsonl").read_text() == first

    # The same evaluation written as an Otter-style YAML gives the same verdicts.
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        f"data: {bench_data}\nout: yaml-results\nbatch_size: 8\n"
        f"datasets:\n  - name: {SHAPES}\n    limit: 12\n"
        f"models:\n  - name: tiny\n    model_path: {otter_dir}\n"
    )
    code, _, err = _eval(capsys, "--config", str(cfg))
    assert code == 0, err
    again = [json.loads(line) for line in (tmp_path / "yaml-results" / "tiny" / "shapes.samples.jsonl").read_text().splitlines()]  # fmt: skip
    assert [r["prediction"] for r in again] == [r["prediction"] for r in rows]


def test_eval_compare_prints_paired_differences(otter_dir, bench_data, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for out, style in ((a, "default"), (b, "bare")):
        code, _, err = _eval(capsys, "--model", str(otter_dir), "--bench", SHAPES, "--data", str(bench_data),
                             "--out", str(out), "--prompt", style)  # fmt: skip
        assert code == 0, err
    (ma,), (mb,) = (
        [p for p in a.iterdir() if p.is_dir() and p.name != "images"],
        [p for p in b.iterdir() if p.is_dir() and p.name != "images"],
    )
    code, stdout, err = run_cli(["eval", "compare", str(ma), str(mb), "--categories"], capsys)
    assert code == 0, err
    assert "shapes" in stdout and "accuracy" in stdout and "left" in stdout and "right" in stdout
    code, stdout, err = run_cli(["eval", "compare", str(ma), str(tmp_path / "nothing")], capsys)
    assert code == 1 and "results not found" in err


def test_eval_errors_are_one_line(otter_dir, bench_data, tmp_path, capsys):
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text('{"model_type": "llama"}')
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((otter_dir / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("datasets: [{name: pope, spilt: test}]\nmodels: [{name: x}]\n")
    base = ["--bench", SHAPES, "--data", str(bench_data), "--out", str(tmp_path / "o")]
    cases = [
        (["--model", str(otter_dir), "--bench", SHAPES, "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "o")],
         "benchmark data folder not found"),
        (["--model", str(otter_dir), "--bench", "nosuchbench", "--data", str(bench_data), "--out", str(tmp_path / "o")],
         "unknown benchmark 'nosuchbench'; choose one of"),
        (["--model", str(otter_dir), "--bench", "tests.syphus.eval.shapes_bench:SHAPES", "--data",
          str(tmp_path), "--out", str(tmp_path / "o")], "no folder shapes/ for benchmark"),
        (["--model", str(llama), *base], "not an Otter model folder (config.json says model_type 'llama')"),
        (["--model", str(pickled), *base], "pickled weights can run code"),
        (["--model", str(tmp_path / "no" / "model"), *base], "model folder not found"),
        (["--config", str(bad_yaml)], "field 'datasets.0.spilt'"),
        (["--model", str(otter_dir), "--data", str(bench_data)], "give --bench"),
    ]  # fmt: skip
    for argv, message in cases:
        code, _, err = _eval(capsys, *argv)
        lines = [line for line in err.splitlines() if line.startswith("error")]
        assert code == 1 and len(lines) == 1 and message in lines[0], (argv, err)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.json"))


def test_every_benchmark_fixture_through_the_cli(otter_dir, tmp_path, capsys):
    """The eight benchmarks' fixtures, MM-Vet graded (and MathVista's extractor fed) by a judge on
    the local test server: a result and one samples line per verdict for each."""
    from syphus.eval.benchmarks import BENCHMARKS
    from syphus.testing.openai_server import OpenAIServer, ServerConfig
    from tests.paths import REAL_DATA

    names = sorted(BENCHMARKS)
    out = tmp_path / "out"
    with OpenAIServer(ServerConfig()) as srv:
        code, stdout, err = _eval(capsys, "--model", str(otter_dir), "--bench", ",".join(names), "--data",
                                  str(REAL_DATA), "--out", str(out), "--judge", "judge-model", "--judge-api-base",
                                  srv.base_url)  # fmt: skip
        judged = srv.state.total
    assert code == 0, err
    assert judged > 0  # MM-Vet's grader at least
    model_dir = out / f"{otter_dir.parent.name}_model"
    for name in names:
        result = json.loads((model_dir / f"{name}.json").read_text())
        lines = (model_dir / f"{name}.samples.jsonl").read_text().splitlines()
        assert result["bench"] == name and len(lines) == len(result["verdicts"]) > 0, name
        assert all(m["stderr"] >= 0 for m in result["metrics"]), name
        assert name in stdout
    mmvet = json.loads((model_dir / "mmvet.json").read_text())
    assert any(n.startswith("judge: judge-model;") for n in mmvet["notes"])
