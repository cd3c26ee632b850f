"""transfer.finetune: adapt a pretrained model to the task's label set (new head, gradual unfreezing,
discriminative learning rates; see training/transfer.py), optionally as the average of several fine-tunes (a model
soup, training/soup.py), and optionally taught again on the data's unlabelled inputs as that model labels them
(self-training)."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from tradeoff.data import Split
from tradeoff.errors import DataError
from tradeoff.evaluation import predict
from tradeoff.inputs import as_tensors, concatenate
from tradeoff.metrics import predicted_labels
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, FinetuneConfig, Pass, register
from tradeoff.training.soup import uniform_soup
from tradeoff.training.transfer import (
    GradualUnfreezing,
    discriminative_groups,
    layer_groups,
    rebuild_head,
    with_new_head,
)


class TransferConfig(FinetuneConfig):
    classes: int | None = Field(default=None, ge=2)  # None: the labels of the training split, 0..max
    # Plain fine-tuning of everything by default: on MNIST-5k 0-4 -> 5-9 (a CNN, 10 epochs) it beat ULMFiT's
    # schedule (head_epochs 1, gradual, lr_decay 2.6) at 10% of the labels (0.898 vs 0.839) and 25% (0.944 vs 0.900).
    head_epochs: int = Field(default=0, ge=0)  # epochs that train the new head alone
    gradual: bool = False  # True: then one more layer group per epoch; False: everything after head_epochs
    lr_decay: float = Field(default=1.0, ge=1.0)  # each group down trains this many times slower (ULMFiT: 2.6)
    finetune_epochs: int = Field(default=10, ge=1)
    seed: int = Field(default=0, ge=0)  # the new head's initial weights
    # fine-tune this many copies of the start, each with its own data order, and average their weights (a uniform
    # model soup, training/soup.py): as fast to run as one; four gained 0.26 points at a quarter of the labels of
    # MNIST-5k's 5-9 (benchmarks/training.py)
    soup: int = Field(default=1, ge=1)
    # then label the data's unlabelled inputs (data.unlabeled) with the model so made and fine-tune again from the
    # pretrained start on them and the labelled inputs together: a Noisy Student round (Xie et al., 2020), whose
    # student learns beyond its teacher through the noise the trainer's augmentation adds, so give it `augment`.
    # MNIST-5k 0-4 -> 5-9 at a quarter of the labels, the rest unlabelled: a soup of four 0.9892 -> 0.9944, above
    # scratch on all the labels (0.9910; benchmarks/training.py). A second round relabels as the first did.
    self_training: bool = False


@register
class TransferFinetune(Pass[TransferConfig]):
    name = "transfer.finetune"
    stage = "transfer"
    tags = frozenset({"retrains", "opt-in"})
    accepts = frozenset({"torch"})

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        if not ctx.data.labelled:
            raise DataError("transfer.finetune learns a new label set and the data has no labels",
                            "give labelled data (a target column, or labels in the text file)")
        if config.self_training and ctx.data.unlabeled is None:
            raise DataError("transfer.finetune's self_training learns from unlabelled inputs and the data has none",
                            "give data.unlabeled (a .csv or .npz of inputs, texts for text data), or leave "
                            "self_training out")
        classes = config.classes or int(ctx.data.train.y.max()) + 1
        torch.manual_seed(config.seed)
        start, state = with_new_head(model.torch_module(), classes)
        if config.self_training:
            teacher = self._soup_of_finetunes(copy.deepcopy(start), ctx)
            ctx = self._with_pseudo_labels(ctx, teacher)
        module = self._soup_of_finetunes(start, ctx)
        return model.with_module(module, structure_step=self.step(), structure_state=state)

    def _soup_of_finetunes(self, start: nn.Module, ctx: Context) -> nn.Module:
        """`start` fine-tuned, or the uniform soup of `soup` fine-tunes of it; the last one trains `start` itself."""
        last = self.config.soup - 1
        ingredients = [self._finetune(start if i == last else copy.deepcopy(start), self._ingredient_context(ctx, i))
                       for i in range(self.config.soup)]
        return ingredients[0] if len(ingredients) == 1 else \
            uniform_soup(ingredients, ctx.data.train.x, ctx.trainer.options.batch_size)

    @staticmethod
    def _with_pseudo_labels(ctx: Context, teacher: nn.Module) -> Context:
        """`ctx` whose training split adds the unlabelled inputs, each labelled with the class `teacher` picks."""
        data, unlabeled = ctx.data, ctx.data.unlabeled
        assert unlabeled is not None  # transform refused data without
        with torch.inference_mode():
            outputs = predict(lambda x: teacher(*as_tensors(x)).numpy(), Split(unlabeled, np.zeros(len(unlabeled))))
        train = Split(concatenate([data.train.x, unlabeled]),
                      np.concatenate([data.train.y, predicted_labels(outputs).astype(data.train.y.dtype)]))
        report = ctx.progress
        return replace(ctx, data=replace(data, train=train), progress=None if report is None else
                       lambda line: report(f"self-training on {len(unlabeled)} pseudo-labelled inputs, {line}"))

    def _ingredient_context(self, ctx: Context, index: int) -> Context:
        """The context of the soup's `index`th fine-tune: its own data order, its place in the progress lines."""
        if self.config.soup == 1:
            return ctx
        report = ctx.progress
        return replace(ctx, seed=ctx.seed + index, progress=None if report is None else
                       lambda line: report(f"soup {index + 1}/{self.config.soup}, {line}"))

    def _finetune(self, module: nn.Module, ctx: Context) -> nn.Module:
        config = self.config
        groups = layer_groups(module)
        unfreezing = GradualUnfreezing(groups if config.gradual else [sum(groups[:-1], []), groups[-1]],
                                       config.head_epochs)
        try:
            ctx.trainer.finetune(module, ctx, config, on_epoch_start=unfreezing,
                                 parameter_groups=discriminative_groups(groups, config.lr, config.lr_decay))
        finally:
            for parameter in module.parameters():
                parameter.requires_grad_(True)
        return module

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        return rebuild_head(module, state)
