"""Hugging Face model folders, loaded offline and wrapped as modules that take token ids and an attention mask.

The wrappers make a folder look like every other model tradeoff handles: one nn.Module whose output is what the
metric compares (a normalized sentence embedding, or class logits), so the same passes, runtimes and export run.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import onnx
import torch
from torch import nn

from tradeoff.encoder_structure import attention_heads, encoder_layers
from tradeoff.errors import ModelError

if TYPE_CHECKING:
    from tradeoff.model import ModelHandle

HfTask = Literal["embedding", "classification"]
FACTORY_PREFIX = "huggingface:"
FACT_PREFIX = "tradeoff."  # metadata keys of the facts export.onnx records about a transformer
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json")


def _offline() -> None:
    """No hub at run time: a folder is read as it is, never completed from the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _check_folder(path: Path, needs: tuple[str, ...], what: str) -> None:
    if not path.is_dir():
        raise ModelError(f"Hugging Face model folder not found: {path}", "point model.path to a local folder")
    if not any((path / name).is_file() for name in needs):
        raise ModelError(f"{path} has no {what} (none of {', '.join(needs)})",
                         "save the model with save_pretrained() and its tokenizer beside it")


class SentenceEmbedding(nn.Module):
    """Mean pooling over real tokens, then L2 normalization: how sentence-transformers encoders are used."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


class SequenceClassifier(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def load_hf_module(path: Path, task: HfTask) -> nn.Module:
    """The folder's model wrapped for `task`, in eval mode, with the attention implementation it defaults to."""
    _offline()
    _check_folder(path, ("config.json",), "config.json")
    _check_folder(path, WEIGHT_FILES, "weights")
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelError(f"cannot read {path / 'config.json'}: {str(exc).splitlines()[0]}",
                         "check the folder's config.json (model_type must be one transformers knows)") from None
    auto = AutoModel if task == "embedding" else AutoModelForSequenceClassification
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = auto.from_pretrained(path, local_files_only=True)
    except ValueError as exc:
        raise ModelError(f"transformers cannot load a '{config.model_type}' model for {task}: "
                         f"{str(exc).splitlines()[0]}", "use an encoder model (BERT, MiniLM, RoBERTa, ...)") from None
    except OSError as exc:
        raise ModelError(f"cannot load the weights in {path}: {str(exc).splitlines()[0]}",
                         "re-save the model") from None
    wrapper = SentenceEmbedding(model) if task == "embedding" else SequenceClassifier(model)
    return wrapper.eval()


def load_tokenizer(path: Path) -> Any:
    _offline()
    _check_folder(path, TOKENIZER_FILES, "tokenizer")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError) as exc:
        raise ModelError(f"cannot load the tokenizer in {path}: {str(exc).splitlines()[0]}",
                         "save it with tokenizer.save_pretrained() into the model folder") from None


def hf_factory(path: Path, task: HfTask) -> str:
    """The factory string an artifact records, so a saved state dict is rebuilt on the same architecture."""
    return f"{FACTORY_PREFIX}{task}:{path.resolve()}"


def build_from_factory(factory: str) -> nn.Module:
    task, _, path = factory.removeprefix(FACTORY_PREFIX).partition(":")
    if task not in ("embedding", "classification"):
        raise ModelError(f"unknown Hugging Face task '{task}' in factory '{factory}'")
    return load_hf_module(Path(path), task)  # type: ignore[arg-type]


def transformer_config(module: nn.Module) -> Any | None:
    """The transformers config of the model inside a wrapper, or None for a plain torch module."""
    for layer in module.modules():
        config = getattr(layer, "config", None)
        if config is not None and hasattr(config, "model_type"):
            return config
    return None


def record_transformer_facts(graph: onnx.ModelProto, module: nn.Module) -> None:
    """Write the shape facts graph optimizers need (model type, heads, hidden size) into an exported graph's
    metadata, since the ONNX graph itself no longer says them."""
    config = transformer_config(module)
    if config is None:
        return
    facts = {"model_type": config.model_type, "num_heads": getattr(config, "num_attention_heads", None),
             "hidden_size": getattr(config, "hidden_size", None)}
    layers = encoder_layers(module)
    if layers is not None:  # head pruning leaves fewer heads than the config says: count them in the weights
        shapes = {attention_heads(layer) for layer in layers}
        heads, size = shapes.pop() if len(shapes) == 1 else (None, None)  # uneven heads: no fusion
        facts.update(num_heads=heads, hidden_size=heads * size if heads and size else None)  # attention's width
    for key, value in facts.items():
        if value is not None:
            graph.metadata_props.add(key=f"{FACT_PREFIX}{key}", value=str(value))


def transformer_facts(graph: onnx.ModelProto) -> dict[str, str]:
    return {p.key.removeprefix(FACT_PREFIX): p.value for p in graph.metadata_props if p.key.startswith(FACT_PREFIX)}


def keep_transformer_facts(source: onnx.ModelProto, result: onnx.ModelProto) -> None:
    """Carry the facts over to a graph a tool rewrote (the optimizer and NNCF drop or replace metadata)."""
    del result.metadata_props[:]
    result.metadata_props.extend(source.metadata_props)


def is_transformer(model: ModelHandle) -> bool:
    """A transformers model, or an ONNX graph export.onnx made from one (it records the heads for fusion)."""
    if model.module is not None:
        return transformer_config(model.module) is not None
    return "num_heads" in transformer_facts(model.onnx_model())


def use_eager_attention(module: nn.Module) -> None:
    """Switch every transformers model inside `module` to eager attention, in place.

    ONNX Runtime's transformer optimizer fuses the eager attention graph into its Attention operator but cannot
    fuse an SDPA export (0 Attention nodes, half the speed), so export wants eager while torch runs SDPA.
    """
    for layer in module.modules():
        setter = getattr(layer, "set_attn_implementation", None)
        if callable(setter) and getattr(getattr(layer, "config", None), "_attn_implementation", None) != "eager":
            setter("eager")
