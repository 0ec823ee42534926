"""translate: reading generated pairs, rendering, and validating the translated reply."""

from __future__ import annotations

import json

import pytest

from schemas.annotations import SourcePair
from schemas.errors import SyphusError
from syphus.tasks.base import Pair, ResponseParseError
from syphus.tasks.langcheck import language_problem
from syphus.tasks.registry import get_task
from syphus.tasks.translate import validate_translation

SRC = [
    SourcePair(
        id="DC_INS_00001",
        instruction="How long does she whisk the batter?",
        answer="About 45 seconds, from 18.5 s to 64.0 s.",
        image_ids=["DC_IMG_v1_0"],
    ),
    SourcePair(
        id="DC_INS_00002",
        instruction="What happens at the end of the video?",
        answer="She serves the pancakes with syrup.",
        image_ids=["DC_IMG_v1_0"],
    ),
]

GOOD = {
    "zh": [
        ("她搅拌面糊多长时间？", "大约 45 秒，从 18.5 秒到 64.0 秒。"),
        ("视频结尾发生了什么？", "她端上淋了糖浆的煎饼。"),
    ],
    "ja": [
        ("彼女はどれくらい生地を混ぜますか？", "約 45 秒、18.5 秒から 64.0 秒までです。"),
        ("動画の最後に何が起きますか？", "彼女はシロップをかけたパンケーキを出します。"),
    ],
    "ko": [
        ("그녀는 반죽을 얼마나 오래 젓나요?", "약 45초 동안, 18.5초부터 64.0초까지입니다."),
        ("영상의 마지막에는 무슨 일이 일어나나요?", "그녀는 시럽을 곁들인 팬케이크를 내놓습니다."),
    ],
    "ar": [
        ("كم من الوقت تخفق الخليط؟", "حوالي 45 ثانية، من 18.5 ثانية إلى 64.0 ثانية."),
        ("ماذا يحدث في نهاية الفيديو؟", "تقدم الفطائر مع الشراب."),
    ],
    "es": [
        ("¿Cuánto tiempo bate la masa?", "Unos 45 segundos, desde los 18.5 s hasta los 64.0 s."),
        ("¿Qué pasa al final del vídeo?", "Ella sirve los panqueques con sirope."),
    ],
    "de": [
        ("Wie lange verrührt sie den Teig?", "Etwa 45 Sekunden, von 18.5 s bis 64.0 s."),
        ("Was passiert am Ende des Videos?", "Sie serviert die Pfannkuchen mit Sirup."),
    ],
    "fr": [
        ("Combien de temps fouette-t-elle la pâte ?", "Environ 45 secondes, de 18.5 s à 64.0 s."),
        ("Que se passe-t-il à la fin de la vidéo ?", "Elle sert les crêpes avec du sirop."),
    ],
}


def reply(pairs) -> str:
    return "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in pairs)


@pytest.mark.parametrize("lang", sorted(GOOD))
def test_good_translation_passes(lang):
    task = get_task("translate", lang=lang, group_size=2)
    [ann] = list(task.annotations_from_pairs(SRC))
    msgs = task.messages(ann)
    assert msgs[0]["role"] == "system" and "{language}" not in msgs[0]["content"]
    assert len(msgs) == 6 and "Translate into" in msgs[-1]["content"] and SRC[1].answer in msgs[-1]["content"]
    pairs = task.parse(reply(GOOD[lang]), ann)
    assert [p.instruction for p in pairs] == [q for q, _ in GOOD[lang]]
    assert (
        task.lang == lang
        and ann.extra["task"] == "DC"
        and ann.extra["source_ids"] == ["DC_INS_00001", "DC_INS_00002"]
    )


def test_count_mismatch_rejected():
    with pytest.raises(ResponseParseError, match="expected 2 translated pair"):
        get_task("translate", lang="zh", group_size=2).parse(reply(GOOD["zh"][:1]), _ann("zh"))


def _ann(lang):
    return next(iter(get_task("translate", lang=lang, group_size=2).annotations_from_pairs(SRC)))


@pytest.mark.parametrize(
    "lang, pairs, reason",
    [
        ("zh", [GOOD["zh"][0], (SRC[1].instruction, SRC[1].answer)], "not translated"),
        ("ja", GOOD["zh"], "reads as Chinese, not Japanese|Japanese"),
        ("zh", GOOD["ja"], "Japanese kana"),
        ("ko", GOOD["zh"], "Hangul"),
        ("ar", GOOD["es"], "Arabic"),
        ("es", GOOD["fr"], "reads as French rather than Spanish"),
        (
            "de",
            [("What happens at the end now?", "Sie serviert die Pfannkuchen mit Sirup.")] + GOOD["de"][1:],
            "not German",
        ),
        (
            "zh",
            [("她搅拌面糊多长时间？", "大约四十五秒。"), GOOD["zh"][1]],
            r"lost number\(s\) 18.5, 45, 64.0",
        ),
    ],
)
def test_wrong_language_or_content_rejected(lang, pairs, reason):
    src = SRC if len(pairs) == 2 else SRC[:1]
    with pytest.raises(ResponseParseError, match=reason):
        validate_translation(src, [Pair(instruction=q, answer=a) for q, a in pairs], lang)


def test_empty_translated_answer_rejected():
    with pytest.raises(ResponseParseError, match="pair 1: question .* has no answer"):
        get_task("translate", lang="zh").parse("Question: 她搅拌面糊多长时间？\nAnswer:", _ann("zh"))


def test_language_check_basics():
    assert language_problem("这是一只在沙发上睡觉的棕色小狗。", "zh") is None
    assert language_problem("Der Hund schläft auf dem Sofa.", "de") is None
    assert language_problem("The dog sleeps on the sofa.", "fr") is not None


def test_reads_mimicit_and_jsonl(tmp_path):
    mim = tmp_path / "DC_instructions.json"
    mim.write_text(
        json.dumps(
            {
                "meta": {},
                "data": {
                    p.id: {
                        "instruction": p.instruction,
                        "answer": p.answer,
                        "image_ids": p.image_ids,
                        "rel_ins_ids": [],
                    }
                    for p in SRC
                },
            }
        )
    )
    task = get_task("translate", lang="fr")
    anns = list(task.read([mim]))
    assert [a.id for a in anns] == ["DC_INS_00001", "DC_INS_00002"] and anns[0].image_ids == ["DC_IMG_v1_0"]
    jl = tmp_path / "pairs.jsonl"
    jl.write_text(json.dumps(SRC[0].model_dump()) + "\n" + json.dumps({"id": "x", "instruction": "q"}) + "\n")
    with pytest.raises(SyphusError, match=r"pairs\.jsonl: line 2: field 'answer'"):
        list(task.read([jl]))
    with pytest.raises(SyphusError, match="field 'lang'"):
        get_task("translate", lang="xx")
    with pytest.raises(SyphusError, match="field 'lang'"):
        get_task("translate")
