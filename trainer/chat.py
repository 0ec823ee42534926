"""Asking a trained Otter about an image, with optional in-context examples, one or many at a time.

The prompt is built by the same ``PromptBuilder`` as training, ending right after the query's
``<answer>``; generation stops at ``<|endofchunk|>``.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from curation.images import DEFAULT_MAX_PIXELS
from schemas.errors import SyphusError
from schemas.progress import Progress
from trainer.prompting import PromptBuilder, SpecialTokens, Turn


@dataclass
class ContextExample:
    image: Image.Image | None
    instruction: str
    answer: str


@dataclass
class Question:
    instruction: str
    image: Image.Image | None = None
    context: list[ContextExample] = field(default_factory=list)
    id: str = ""
    # Further query images, after ``image`` on T (a benchmark question may show several).
    more_images: list[Image.Image] = field(default_factory=list)

    @property
    def images(self) -> list[Image.Image]:
        return ([self.image] if self.image is not None else []) + list(self.more_images)


def open_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An RGB image; the pixel count is checked from the header before anything is decoded, so a
    small file that claims gigabytes of pixels (a decompression bomb) is refused cheaply."""
    path = Path(path)
    if not path.is_file():
        raise SyphusError(f"{path}: image not found")
    return _decode(path, str(path), max_pixels)


def image_from_bytes(data: bytes, where: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """``open_image`` for encoded bytes held in memory (a benchmark's images); ``where`` names them
    in errors."""
    return _decode(io.BytesIO(data), where, max_pixels)


def _decode(source, where: str, max_pixels: int) -> Image.Image:
    pil_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # our own limit below, with a message naming the file
            with Image.open(source) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise SyphusError(
                        f"{where}: image is {width}x{height} = {width * height} pixels, over the limit of "
                        f"{max_pixels} (possible decompression bomb; raise --max-pixels if it is genuine)"
                    )
                return im.convert("RGB")
    except OSError as e:
        raise SyphusError(f"{where}: cannot decode image ({' '.join(str(e).split())})") from e
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit


def _other_model_type(folder: Path) -> str | None:
    """The model_type of a readable config.json that is not an Otter's (a damaged one is
    ``load_otter``'s to report)."""
    from trainer.model.configuration_otter import OtterConfig

    try:
        kind = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) and kind != OtterConfig.model_type else None


class Chat:
    """A loaded model plus its tokenizer and image processor, ready to answer questions."""

    def __init__(self, model, tokenizer, image_processor, prompt_format: str = "otter"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.special = SpecialTokens.from_model(tokenizer, model.config)
        self.builder = PromptBuilder(tokenizer, self.special, prompt_format)

    @classmethod
    def load(cls, model_dir: str | Path, prompt_format: str = "otter") -> Chat:
        from trainer.model.modeling_otter import load_otter

        if not Path(model_dir).exists():
            raise SyphusError(f"{model_dir}: model folder not found")
        other = _other_model_type(Path(model_dir))
        if other is not None:
            raise SyphusError(
                f"{model_dir}: not an Otter model folder (config.json says model_type {other!r}); "
                "give a folder written by `syphus train` or `syphus convert`"
            )
        model, tokenizer, image_processor = load_otter(str(model_dir))
        return cls(model, tokenizer, image_processor, prompt_format)

    def _inputs(self, q: Question) -> tuple[list[int], torch.Tensor | None]:
        turns = [Turn(c.instruction, c.answer, 1 if c.image is not None else 0) for c in q.context]
        turns.append(Turn(q.instruction, None, len(q.images)))
        ids = self.builder.encode(turns).input_ids
        images = [c.image for c in q.context if c.image is not None] + q.images
        if not images:
            return ids, None
        pixels = self.image_processor(images)  # [T, C, H, W]
        return ids, pixels.unsqueeze(1)  # [T, F=1, C, H, W]

    @torch.no_grad()
    def ask(self, q: Question, max_new_tokens: int = 32) -> str:
        return self.ask_many([q], max_new_tokens=max_new_tokens)[0]

    @torch.no_grad()
    def ask_many(
        self, questions: list[Question], max_new_tokens: int = 32, batch_size: int = 16
    ) -> list[str]:
        """Greedy answers in the order asked, ``batch_size`` questions per generate call.

        Prompts are left-padded, decoding is KV-cached and each question's images are encoded once;
        an answer does not depend on the batch it shares (padding is masked, positions count real
        tokens), so questions are batched by prompt length to waste little on padding.
        """
        encoded_all = [self._inputs(q) for q in questions]
        order = sorted(range(len(questions)), key=lambda i: len(encoded_all[i][0]))
        answers: list[str] = [""] * len(questions)
        dtype = next(self.model.parameters()).dtype
        device = next(self.model.parameters()).device
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encoded = [encoded_all[i] for i in chunk]
            length = max(len(ids) for ids, _ in encoded)
            lang_x = torch.full((len(encoded), length), self.special.pad_id, dtype=torch.long)
            mask = torch.zeros_like(lang_x)
            for i, (ids, _) in enumerate(encoded):
                lang_x[i, length - len(ids) :] = torch.tensor(ids)
                mask[i, length - len(ids) :] = 1
            vision = None
            shapes = [v.shape for _, v in encoded if v is not None]
            if shapes:
                t = max(s[0] for s in shapes)
                vision = torch.zeros((len(encoded), t, *shapes[0][1:]))
                for i, (_, v) in enumerate(encoded):
                    if v is not None:
                        vision[i, : v.shape[0]] = v
                vision = vision.to(device=device, dtype=dtype)
            gen = self.model.generate(
                vision_x=vision,
                lang_x=lang_x.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                pad_token_id=self.special.pad_id,
            )
            for i, row in zip(chunk, gen, strict=True):
                answers[i] = self._decode(row[length:].tolist())
        return answers

    def _decode(self, tokens: list[int]) -> str:
        stop = {self.special.endofchunk_id, self.special.pad_id}
        if self.tokenizer.eos_token_id is not None:
            stop.add(self.tokenizer.eos_token_id)
        kept = []
        for t in tokens:
            if t in stop:
                break
            kept.append(t)
        return self.tokenizer.decode(kept, skip_special_tokens=True).strip()


def read_questions(path: str | Path) -> list[Question]:
    """A JSONL file, one question a line: ``{"id", "instruction", "image"?, "context"?: [{"image"?,
    "instruction", "answer"}]}``; image paths are relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise SyphusError(f"{path}: input file not found")
    base = path.parent
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SyphusError(
            f"{path}: not UTF-8 text (byte {e.start}); save the questions as UTF-8 JSONL"
        ) from e
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SyphusError(f"{path}: line {n}: malformed JSON ({e.msg})") from e
        if not isinstance(rec, dict) or not isinstance(rec.get("instruction"), str):
            raise SyphusError(f"{path}: line {n}: field 'instruction' missing or not a string")

        def img(p):
            return open_image(base / p) if p else None

        context = []
        for i, c in enumerate(rec.get("context") or []):
            if not isinstance(c, dict) or not isinstance(c.get("answer"), str):
                raise SyphusError(f"{path}: line {n}: context[{i}].answer missing or not a string")
            context.append(
                ContextExample(img(c.get("image")), c.get("instruction", rec["instruction"]), c["answer"])
            )
        out.append(Question(rec["instruction"], img(rec.get("image")), context, str(rec.get("id", n))))
    return out


def infer_file(
    model_dir: str | Path,
    input_path: str | Path,
    out_path: str | Path,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> int:
    """Answer every question of a JSONL file; writes ``{"id", "instruction", "answer"}`` lines."""
    questions = read_questions(input_path)
    chat = Chat.load(model_dir)
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as f:
        for start in range(0, len(questions), batch_size):
            chunk = questions[start : start + batch_size]
            for q, answer in zip(chunk, chat.ask_many(chunk, max_new_tokens, batch_size), strict=True):
                row = {"id": q.id, "instruction": q.instruction, "answer": answer}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            if progress is not None:
                progress(len(chunk))
    tmp.replace(out_path)
    return len(questions)
