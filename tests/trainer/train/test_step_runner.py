"""The trainer's lean single-process step gives exactly DeepSpeed's own update.

``StepRunner`` skips the all-reduce in a world of one and clips the trainable gradients with
torch at ZeRO-0 in fp32. Both must leave the weights where DeepSpeed's full path (all-reduce +
its own clip) leaves them, also with gradient accumulation and with clipping active.
The comparison runs in a child process: DeepSpeed's process group must not leak into pytest.
"""

from __future__ import annotations

import textwrap

from .helpers import REPO, run_python

SCRIPT = textwrap.dedent(
    """
    import copy, json, sys, tempfile
    from pathlib import Path
    import torch, deepspeed
    sys.path.insert(0, sys.argv[1])
    from schemas.mix import MixConfig
    from schemas.train import TrainConfig
    from tests.trainer.train.helpers import shapes_vqa, write_shards
    from trainer.data import MixStream, StreamOptions
    from trainer.model.modeling_otter import build_otter
    from trainer.prompting import SpecialTokens
    from trainer.train import StepRunner, cosine_with_warmup, deepspeed_config, forward_batch, init_distributed

    torch.manual_seed(0)
    init_distributed()
    model, tok, ip = build_otter("tiny")
    tmp = Path(tempfile.mkdtemp())
    rows, images = shapes_vqa(48, seed=3)
    write_shards(tmp / "s", rows, images)
    mix = MixConfig.model_validate({"IMAGE_TEXT": {"s": {"shards_path": str(tmp / "s")}}})
    it = iter(MixStream(mix, tokenizer=tok, special=SpecialTokens.from_model(tok, model.config),
                        image_processor=ip, options=StreamOptions(batch_size=8)))
    batches = [next(it) for _ in range(6)]
    result = {}
    for grad_accum, clip in [(1, 0.05), (2, 0.05), (1, 1000.0)]:
        cfg = TrainConfig(max_steps=10, batch_size=8, grad_accum=grad_accum, zero_stage=0, clip_grad=clip)
        finals = []
        for lean in (False, True):
            m = copy.deepcopy(model)
            groups = [g for g in m.optimizer_param_groups(0.1) if g["params"]]
            opt = torch.optim.AdamW(groups, lr=1e-2)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(10, 2))
            ds_cfg = deepspeed_config(cfg, "fp32", False)
            if not lean:
                ds_cfg["gradient_clipping"] = clip  # DeepSpeed clips and all-reduces itself
            engine, *_ = deepspeed.initialize(model=m, optimizer=opt, lr_scheduler=sched, config=ds_cfg)
            if lean:
                step = StepRunner(engine, cfg, "fp32", world_size=1)
                assert step.clip == clip and not engine.enable_backward_allreduce
            for b in batches:
                if lean:
                    step(b)
                else:
                    loss = forward_batch(engine, b, torch.float32)[0]
                    engine.backward(loss)
                    engine.step()
            finals.append({k: v.detach().clone() for k, v in m.named_parameters() if v.requires_grad})
        ref, got = finals
        moved = max(float((ref[k] - model.state_dict()[k]).abs().max()) for k in ref)
        diff = max(float((ref[k] - got[k]).abs().max()) for k in ref)
        result[f"accum{grad_accum}_clip{clip}"] = {"diff": diff, "moved": moved}
    print(json.dumps(result))
    """
)


def test_lean_step_matches_deepspeed_clip_and_allreduce():
    proc = run_python("-c", SCRIPT, str(REPO))
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for case, r in result.items():
        assert r["moved"] > 1e-3, case  # the weights did train
        assert r["diff"] <= 1e-6, (case, r)
