"""The Trainer a pass is handed: it recovers accuracy on train only, reports progress and keeps a time budget."""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from tradeoff.data import DataBundle
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, FinetuneConfig


def test_the_trainer_reports_each_epoch_and_starts_none_past_the_deadline(digits: DataBundle,
                                                                          mlp: ModelHandle) -> None:
    statuses: list[str] = []
    ctx = Context(data=digits, seed=0, threads=2, progress=statuses.append)
    options = FinetuneConfig(finetune_epochs=2)
    result = ctx.trainer.finetune(mlp.torch_module(), ctx, options)
    assert result is not None and result.epochs_run == 2
    assert statuses == ["fine-tuning: epoch 1/2", "fine-tuning: epoch 2/2"]
    late = replace(ctx, deadline=time.monotonic() - 1.0, progress=None)
    module = mlp.torch_module()
    stopped = late.trainer.finetune(module, late, options)
    assert stopped is not None and stopped.epochs_run == 0
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), mlp.module.state_dict().values(),
                                                  strict=True))
    assert ctx.trainer.finetune(mlp.torch_module(), ctx, FinetuneConfig(finetune_epochs=0)) is None
