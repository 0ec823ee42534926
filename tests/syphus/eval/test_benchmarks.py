"""Each benchmark reads its own distributed files (the fixtures are in the published row schemas),
and a wrong or missing field is a one-line error naming the file and the field."""

from __future__ import annotations

import base64
import io
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from schemas.errors import SyphusError
from syphus.eval.benchmarks import BENCHMARKS, get_benchmark
from tests.paths import REAL_DATA

EXPECTED = {
    "mme": 8,
    "pope": 6,
    "scienceqa_img": 4,
    "seedbench": 4,
    "mmbench": 6,
    "magnifierbench": 3,
    "mathvista": 4,
    "mmvet": 3,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_benchmark_reads_its_fixture_with_decodable_images(name):
    samples = list(get_benchmark(name).read(REAL_DATA / name))
    assert len(samples) == EXPECTED[name]
    assert len({s.id for s in samples}) == len(samples)
    for s in samples:
        assert s.bench == name and s.question and s.target and s.category
        assert s.images, s.id
        for data in s.images:
            Image.open(io.BytesIO(data)).verify()
        if s.options:
            assert s.target in s.options or name == "mathvista"


def test_every_fixture_folder_says_where_its_schema_comes_from():
    for name in [*EXPECTED, "vlmevalkit"]:
        text = (REAL_DATA / name / "SOURCE.md").read_text()
        assert "commit" in text.lower(), name


def test_get_benchmark_names_the_choices():
    assert get_benchmark("MME").name == "mme"
    assert get_benchmark("scienceqa-img").name == "scienceqa_img"
    with pytest.raises(SyphusError, match="unknown benchmark 'mmmu'.*mathvista.*pope"):
        get_benchmark("mmmu")


def test_mme_pairs_the_two_questions_of_an_image():
    samples = list(BENCHMARKS["mme"].read(REAL_DATA / "mme"))
    first, second = samples[0], samples[1]
    assert first.meta["image"] == second.meta["image"] == "existence/000000000001.jpg"
    assert (first.target, second.target) == ("yes", "no")
    assert first.id != second.id


def test_scienceqa_reads_the_img_config_test_split_by_default_and_others_on_request():
    b = BENCHMARKS["scienceqa_img"]
    test = list(b.read(REAL_DATA / "scienceqa_img"))
    assert [s.target for s in test] == ["B", "B", "A", "B"]
    assert test[1].options == {"A": "circle", "B": "square", "C": "triangle"}
    assert test[1].meta["hint"] == "The figure shows one shape."
    assert len(list(b.read(REAL_DATA / "scienceqa_img", split="validation"))) == 1
    with pytest.raises(SyphusError, match=r"no 'train' split.*splits found: test, validation"):
        list(b.read(REAL_DATA / "scienceqa_img", split="train"))


def test_mmbench_reads_the_en_config_and_groups_rotations_by_index_mod_a_million():
    samples = list(BENCHMARKS["mmbench"].read(REAL_DATA / "mmbench"))
    assert all(s.question.isascii() for s in samples)  # the cn config beside it is not read
    groups = [s.meta["group"] for s in samples]
    assert groups == ["0", "0", "0", "0", "1", "1"]
    assert samples[4].options == {"A": "circle", "B": "square"}  # null C and D are not options
    assert samples[4].meta["hint"] == "The picture shows one shape."


def test_vlmevalkit_tsv_gives_the_same_samples_as_the_hub_parquet():
    b = BENCHMARKS["mmbench"]
    hub = list(b.read(REAL_DATA / "mmbench"))
    tsv = list(b.read(REAL_DATA / "vlmevalkit" / "MMBench_DEV_EN.tsv"))
    assert [(s.id, s.target, s.options, s.meta["group"], s.images) for s in tsv] == [
        (s.id, s.target, s.options, s.meta["group"], s.images) for s in hub
    ]


def test_vlmevalkit_mme_tsv_follows_an_image_cell_that_names_another_row():
    first, second = BENCHMARKS["mme"].read(REAL_DATA / "vlmevalkit" / "MME.tsv")
    assert second.images == first.images and len(first.images[0]) > 64
    assert first.meta["image"] == second.meta["image"]


def test_mathvista_multiple_choice_target_is_the_letter_of_the_answer_text():
    mc, integer, flt, lst = BENCHMARKS["mathvista"].read(REAL_DATA / "mathvista")
    assert (mc.target, mc.meta["answer_text"], mc.options["B"]) == ("B", "red", "red")
    assert (integer.meta["answer_type"], flt.meta["precision"], lst.meta["answer_type"]) == (
        "integer",
        2.0,
        "list",
    )
    assert mc.category == "figure question answering" and "scientific reasoning" in mc.meta["skills"]
    assert BENCHMARKS["mathvista"].prompt(mc) == mc.meta["query"]


def test_seedbench_video_rows_carry_their_frames():
    video = list(BENCHMARKS["seedbench"].read(REAL_DATA / "seedbench"))[-1]
    assert video.category == "video" and len(video.images) == 2
    assert video.meta["labels"] == ["dimension: Action Recognition"]


def test_magnifierbench_options_come_from_the_instruction():
    s = next(iter(BENCHMARKS["magnifierbench"].read(REAL_DATA / "magnifierbench")))
    assert s.options == {"A": "red", "B": "blue", "C": "green", "D": "black"}


def test_limit_reads_only_the_first_samples():
    assert [s.id for s in BENCHMARKS["pope"].read(REAL_DATA / "pope", limit=2)] == [
        "adversarial/1",
        "adversarial/2",
    ]


# ---------------------------------------------------------------- errors naming the file and field


def _rewrite(src, dst, change):
    table = change(pq.read_table(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, dst)
    return dst


def test_a_missing_field_names_the_file_and_the_field(tmp_path):
    src = REAL_DATA / "mme" / "data" / "test-00000-of-00001.parquet"
    bad = _rewrite(src, tmp_path / "test-00000-of-00001.parquet", lambda t: t.drop_columns(["category"]))
    with pytest.raises(SyphusError) as e:
        list(BENCHMARKS["mme"].read(tmp_path))
    msg = str(e.value)
    assert str(bad) in msg and "field 'category' missing" in msg and "\n" not in msg


def test_a_field_of_the_wrong_type_names_the_file_and_the_field(tmp_path):
    src = REAL_DATA / "scienceqa_img" / "ScienceQA-IMG" / "test-00000-of-00001.parquet"

    def as_text(t):
        i = t.schema.get_field_index("answer")
        return t.set_column(i, "answer", pa.array([str(x) for x in t.column("answer").to_pylist()]))

    bad = _rewrite(src, tmp_path / "test-00000-of-00001.parquet", as_text)
    with pytest.raises(SyphusError, match=rf"{bad}: field 'answer' is string, expected integer"):
        list(BENCHMARKS["scienceqa_img"].read(bad))


def test_a_bad_value_names_the_row_and_the_field(tmp_path):
    src = REAL_DATA / "mme" / "data" / "test-00000-of-00001.parquet"

    def maybe(t):
        answers = t.column("answer").to_pylist()
        answers[3] = "Maybe"
        return t.set_column(t.schema.get_field_index("answer"), "answer", pa.array(answers))

    bad = _rewrite(src, tmp_path / "x.parquet", maybe)
    with pytest.raises(SyphusError, match=rf"{bad}: row 3: field 'answer' is 'maybe', expected Yes or No"):
        list(BENCHMARKS["mme"].read(bad))


def test_an_answer_outside_the_options_is_refused(tmp_path):
    src = REAL_DATA / "seedbench" / "data" / "test-00000-of-00001.parquet"

    def e_answer(t):
        answers = t.column("answer").to_pylist()
        answers[0] = "E"
        return t.set_column(0, "answer", pa.array(answers))

    bad = _rewrite(src, tmp_path / "x.parquet", e_answer)
    with pytest.raises(SyphusError, match=r"row 0: field 'answer' is 'E', not one of the options A, B, C, D"):
        list(BENCHMARKS["seedbench"].read(bad))


def test_duplicate_ids_are_refused(tmp_path):
    src = REAL_DATA / "mmvet" / "data" / "test-00000-of-00001.parquet"
    t = pq.read_table(src)
    bad = tmp_path / "x.parquet"
    pq.write_table(pa.concat_tables([t, t.slice(0, 1)]), bad)
    with pytest.raises(SyphusError, match=r"row 3: sample id 'v1_0' \(question_id\) appears twice"):
        list(BENCHMARKS["mmvet"].read(bad))


def test_a_tsv_missing_a_column_names_it(tmp_path):
    src = (REAL_DATA / "vlmevalkit" / "MMBench_DEV_EN.tsv").read_text()
    bad = tmp_path / "MMBench_DEV_EN.tsv"
    bad.write_text(src.replace("\tanswer\t", "\tgold\t", 1))
    with pytest.raises(SyphusError, match=rf"{bad}: field 'answer' missing"):
        list(BENCHMARKS["mmbench"].read(bad))


def test_a_tsv_image_cell_naming_a_missing_row_is_refused(tmp_path):
    lines = (REAL_DATA / "vlmevalkit" / "MME.tsv").read_text().splitlines()
    lines[2] = lines[2].replace("\t0\t", "\t99\t", 1)
    bad = tmp_path / "MME.tsv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(SyphusError, match=r"row 1: field 'image' refers to index '99', which holds no image"):
        list(BENCHMARKS["mme"].read(bad))


def test_a_tsv_image_that_is_not_base64_is_refused(tmp_path):
    lines = (REAL_DATA / "vlmevalkit" / "MME.tsv").read_text().splitlines()
    cells = lines[1].split("\t")
    cells[1] = "!" * 100
    lines[1] = "\t".join(cells)
    bad = tmp_path / "MME.tsv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(SyphusError, match=r"row 0: field 'image' is not valid base64"):
        list(BENCHMARKS["mme"].read(bad))


def test_a_benchmark_without_a_known_tsv_layout_says_so(tmp_path):
    tsv = tmp_path / "MagnifierBench.tsv"
    tsv.write_text("index\tquestion\n0\tq\n")
    with pytest.raises(SyphusError, match="no VLMEvalKit TSV layout is known for 'magnifierbench'"):
        list(BENCHMARKS["magnifierbench"].read(tsv))


def test_missing_path_and_empty_folder_are_errors(tmp_path):
    with pytest.raises(SyphusError, match="no such file or folder for benchmark 'pope'"):
        list(BENCHMARKS["pope"].read(tmp_path / "nope"))
    with pytest.raises(SyphusError, match="no .parquet or .tsv files"):
        list(BENCHMARKS["pope"].read(tmp_path))


def test_a_file_that_is_not_parquet_is_an_error(tmp_path):
    bad = tmp_path / "test-00000-of-00001.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(SyphusError, match=rf"{bad}: not a readable parquet file"):
        list(BENCHMARKS["pope"].read(bad))


def test_an_image_stored_as_a_path_is_read_from_beside_the_file(tmp_path):
    folder = tmp_path / "mmvet"
    shutil.copytree(REAL_DATA / "mmvet", folder)
    shard = folder / "data" / "test-00000-of-00001.parquet"
    t = pq.read_table(shard)
    images = t.column("image").to_pylist()
    (folder / "data" / "v1_0.jpg").write_bytes(images[0]["bytes"])
    images[0] = {"bytes": None, "path": "v1_0.jpg"}
    images[1] = {"bytes": None, "path": "gone.jpg"}
    t = t.set_column(
        t.schema.get_field_index("image"), "image", pa.array(images, type=t.schema.field("image").type)
    )
    pq.write_table(t, shard)
    with pytest.raises(SyphusError, match=r"row 1: field 'image' has no bytes and its path 'gone.jpg'"):
        list(BENCHMARKS["mmvet"].read(folder))
    first = next(iter(BENCHMARKS["mmvet"].read(folder)))
    assert first.images[0] == (folder / "data" / "v1_0.jpg").read_bytes()


# ---------------------------------------------------------------- prompts


def test_prompt_styles():
    b = BENCHMARKS["scienceqa_img"]
    s = list(b.read(REAL_DATA / "scienceqa_img"))[1]
    default = b.prompt(s)
    assert default.startswith(
        "Context: The figure shows one shape.\nWhich shape is shown?\nA. circle\nB. square"
    )
    assert default.endswith("Answer with the option's letter from the given choices directly.")
    assert b.prompt(s, "bare") == default.rsplit("\n", 1)[0]
    assert b.prompt(s, "Reply with one letter.").endswith("C. triangle\nReply with one letter.")
    assert (
        b.prompt(s, "Q: {question}\n{options}\nA:")
        == "Q: Which shape is shown?\nA. circle\nB. square\nC. triangle\nA:"
    )
    with pytest.raises(SyphusError, match="prompt template .* is malformed"):
        b.prompt(s, "{question} {nope}")


def test_tsv_images_decode_like_the_parquet_ones():
    tsv = next(iter(BENCHMARKS["mmbench"].read(REAL_DATA / "vlmevalkit" / "MMBench_DEV_EN.tsv")))
    line = (REAL_DATA / "vlmevalkit" / "MMBench_DEV_EN.tsv").read_text().splitlines()[1].split("\t")
    assert tsv.images == [base64.b64decode(line[9])]


def test_seedbench_question_type_id_may_be_a_string_as_in_the_authors_loader(tmp_path):
    src = REAL_DATA / "seedbench" / "data" / "test-00000-of-00001.parquet"

    def as_text(t):
        i = t.schema.get_field_index("question_type_id")
        return t.set_column(i, "question_type_id", pa.array([str(x) for x in t.column(i).to_pylist()]))

    bad = _rewrite(src, tmp_path / "x.parquet", as_text)
    assert [s.meta["labels"] for s in BENCHMARKS["seedbench"].read(bad)][1] == [
        "dimension: Instances Counting"
    ]


def test_a_tsv_with_a_split_column_keeps_the_split_asked_for(tmp_path):
    lines = (REAL_DATA / "vlmevalkit" / "MMBench_DEV_EN.tsv").read_text().splitlines()
    lines[-1] = lines[-1].rsplit("\t", 1)[0] + "\ttest"
    tsv = tmp_path / "MMBench_EN.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    assert len(list(BENCHMARKS["mmbench"].read(tsv))) == 6
    assert [s.id for s in BENCHMARKS["mmbench"].read(tsv, split="test")] == ["1000001"]
