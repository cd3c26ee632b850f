"""The Trainer a pass is handed: it recovers accuracy on train only, reports progress and keeps a time budget."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from tradeoff.config import TrainSpec
from tradeoff.data import DataBundle, Split
from tradeoff.errors import ConfigError
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, FinetuneConfig
from tradeoff.training import EpochRecord, Trainer, TrainResult, fit
from tradeoff.training.gradient_checkpointing import gradient_checkpointing


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


def test_fine_tuning_holds_a_tenth_of_train_out_only_where_early_stopping_reads_it(digits: DataBundle,
                                                                                  mlp: ModelHandle) -> None:
    """Without early stopping nothing decides on the holdout: fine-tuning trains on every labelled row it has."""
    fitting, _ = digits.train_holdout()
    for spec, rows in ((TrainSpec(), len(fitting)), (TrainSpec(early_stopping=None), len(digits.train))):
        ctx = Context(data=digits, seed=0, threads=2, trainer=Trainer(spec))
        result = ctx.trainer.finetune(mlp.torch_module(), ctx, FinetuneConfig(finetune_epochs=1))
        assert result is not None and round(result.history[0].samples_per_s * result.history[0].seconds) == rows


def _mlp(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 10))


def _accuracy(module: nn.Module, split: Split) -> float:
    with torch.inference_mode():
        return float((module(torch.from_numpy(split.x)).argmax(1).numpy() == split.y).mean())


def _train(digits: DataBundle, module: nn.Module | None = None, **options: object) -> tuple[nn.Module, TrainResult]:
    module = _mlp() if module is None else module
    result = Trainer(TrainSpec(**{"epochs": 4, **options})).train(module, digits, metric=get_metric("accuracy"))
    return module, result


def test_early_stopping_on_the_metric_keeps_the_best_epochs_weights_and_says_when(digits: DataBundle) -> None:
    module, result = _train(digits, epochs=40, lr=0.02, early_stopping={"monitor": "metric", "patience": 2})
    assert result.stopped_early and result.epochs_run < 40
    scores = [r.monitor_metric for r in result.history]
    assert result.best_epoch == 1 + scores.index(max(scores)) and result.best_value == max(scores)
    assert result.epochs_run == result.best_epoch + 2  # patience 2: two epochs without improvement, then stop
    _, holdout = digits.train_holdout()
    assert _accuracy(module, holdout) == pytest.approx(result.best_value)  # the best epoch's weights are kept


def test_a_min_delta_nothing_reaches_keeps_the_starting_weights(digits: DataBundle) -> None:
    start = _mlp().state_dict()
    module, result = _train(digits, early_stopping={"patience": 2, "min_delta": 100.0})
    assert (result.epochs_run, result.best_epoch, result.stopped_early) == (2, 0, True)
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), start.values(), strict=True))


def test_without_early_stopping_all_of_train_is_used_and_validation_only_recorded(digits: DataBundle) -> None:
    seen: list[int] = []
    module, result = _train(digits, early_stopping=None, epochs=3)
    assert result.epochs_run == 3 and not result.stopped_early
    assert result.history[-1].monitor_metric == pytest.approx(_accuracy(module, digits.val))  # last weights kept
    holdout_trained = Trainer(TrainSpec(epochs=1)).train(_mlp(), digits, on_epoch_end=lambda r: seen.append(r.epoch))
    assert seen == [1] and holdout_trained.history[0].samples_per_s > 0


def test_clipping_by_value_and_by_norm_logs_the_fraction_of_clipped_steps(digits: DataBundle) -> None:
    _, tiny = _train(digits, epochs=1, clip={"mode": "value", "max": 1e-4})
    _, huge = _train(digits, epochs=1, clip={"mode": "norm", "max": 1e6})
    _, default = _train(digits, epochs=1)
    assert tiny.history[0].clipped == 1.0 and huge.history[0].clipped == 0.0
    assert tiny.history[0].monitor_loss > default.history[0].monitor_loss  # steps of 1e-4 per weight barely move


@pytest.mark.parametrize(("schedule", "warmup", "last"), [("constant", 0, 3e-3), ("cosine", 0, 0.0), ("linear", 0, 0.0),
                                                         ("onecycle", 0, None), ("cosine", 2, 0.0)])
def test_learning_rate_schedules_end_where_they_should(digits: DataBundle, schedule: str, warmup: float,
                                                        last: float | None) -> None:
    _, result = _train(digits, lr=3e-3, schedule=schedule, warmup_epochs=warmup)
    rates = [r.lr for r in result.history]
    if last is not None:
        assert rates[-1] == pytest.approx(last, abs=1e-7)
    if warmup:
        assert rates[0] < rates[1] == pytest.approx(3e-3, rel=0.01)  # still ramping after epoch 1 of 2
    if schedule == "onecycle":
        assert max(rates) <= 3e-3 and rates[-1] < rates[1] / 100


def test_weight_decay_shrinks_the_weights_and_label_smoothing_the_confidence(digits: DataBundle) -> None:
    plain, _ = _train(digits, optimizer="adamw", lr=3e-3)
    decayed, _ = _train(digits, optimizer="adamw", lr=3e-3, weight_decay=2.0)
    smoothed, _ = _train(digits, lr=3e-3, label_smoothing=0.3)

    def norm(m: nn.Module) -> float:
        return float(sum(p.detach().norm() ** 2 for p in m.parameters()))

    def confidence(m: nn.Module) -> float:
        with torch.inference_mode():
            return float(m(torch.from_numpy(digits.val.x)).softmax(1).max(1).values.mean())

    assert norm(decayed) < 0.9 * norm(plain)
    assert confidence(smoothed) < confidence(plain) - 0.05


def test_dropout_sets_the_models_own_layers_and_refuses_a_model_without_any(digits: DataBundle) -> None:
    module, _ = _train(digits, epochs=1, dropout=0.3)
    assert [m.p for m in module.modules() if isinstance(m, nn.Dropout)] == [0.3]
    with pytest.raises(ConfigError, match="no nn.Dropout"):
        _train(digits, module=nn.Sequential(nn.Linear(64, 10)), dropout=0.3)


def test_bf16_autocast_trains_like_fp32_and_fp16_asks_for_a_gpu(digits: DataBundle) -> None:
    fp32, full = _train(digits, lr=3e-3)
    bf16, half = _train(digits, lr=3e-3, precision="bf16")
    assert all(abs(a.monitor_loss - b.monitor_loss) < 0.05 for a, b in zip(full.history, half.history, strict=True))
    assert _accuracy(bf16, digits.val) > 0.9
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16 needs a GPU"):
            _train(digits, precision="fp16")


def _saved_for_backward(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes of activations autograd keeps for the backward pass (what checkpointing trades for recompute)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    module.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x).sum().backward()
    return total


def test_gradient_checkpointing_keeps_the_loss_curve_and_keeps_fewer_activations(digits: DataBundle) -> None:
    def deep() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(64, 64), nn.ReLU())], nn.Linear(64, 10))

    _, plain = _train(digits, module=deep(), epochs=2)
    checkpointed_model, checkpointed = _train(digits, module=deep(), epochs=2, gradient_checkpointing=True)
    assert [r.train_loss for r in checkpointed.history] == pytest.approx([r.train_loss for r in plain.history])
    x = torch.from_numpy(digits.train.x[:256])
    with gradient_checkpointing(checkpointed_model):
        kept = _saved_for_backward(checkpointed_model, x)
    assert kept < 0.5 * _saved_for_backward(deep(), x)
    with pytest.raises(ConfigError, match="no nn.Sequential"):
        _train(digits, module=nn.Linear(64, 10), gradient_checkpointing=True)


def test_a_run_stopped_after_an_epoch_resumes_to_the_weights_of_an_uninterrupted_run(digits: DataBundle,
                                                                                      tmp_path: Path) -> None:
    spec = TrainSpec(epochs=4, lr=3e-3, dropout=0.2, schedule="cosine",
                     augment={"kind": "image", "shift": 0.1, "rotation": 10, "mixup": 0.2})  # seeded, mixed targets
    whole = _mlp(0.2)
    Trainer(spec).train(whole, digits, checkpoint=tmp_path / "whole.pt")

    def interrupt(record: EpochRecord) -> None:
        if record.epoch == 2:
            raise KeyboardInterrupt

    cut = _mlp(0.2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(spec).train(cut, digits, checkpoint=tmp_path / "cut.pt", on_epoch_end=interrupt)
    resumed = _mlp(0.2)  # a fresh process would build the model anew
    result = Trainer(spec).train(resumed, digits, checkpoint=tmp_path / "cut.pt", resume=True)
    assert [r.epoch for r in result.history] == [1, 2, 3, 4]
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.state_dict().values(),
                                                  strict=True))
    with pytest.raises(ConfigError, match="other train options"):
        Trainer(spec.model_copy(update={"lr": 1e-2})).train(_mlp(0.2), digits, checkpoint=tmp_path / "cut.pt",
                                                              resume=True)


def test_fit_names_a_wrong_option_in_one_line(digits: DataBundle) -> None:
    with pytest.raises(ConfigError, match="patience"):
        fit(_mlp(), digits.train, digits.val, patience=3)
