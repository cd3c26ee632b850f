"""The task file as pydantic models, and the presets that fill in what a task file leaves out."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from tradeoff.energy import WATTS_PER_CORE
from tradeoff.errors import ConfigError
from tradeoff.objectives import OBJECTIVES, parse, unknown_objective
from tradeoff.validation import read_yaml, validate

Fraction = Annotated[float, Field(gt=0, lt=1)]  # NaN fails both bounds


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(StrictModel):
    source: Literal["torch", "onnx", "huggingface"]
    factory: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the factory
    weights: Path | None = None
    path: Path | None = None
    output: str | None = None  # an ONNX model's output of scores, where it has several
    task: Literal["embedding", "classification"] = "embedding"
    allow_pickle: bool = False

    @model_validator(mode="after")
    def _needs_what_its_source_needs(self) -> ModelSpec:
        if self.source == "torch" and not self.factory:
            raise ValueError("a torch model needs 'factory' (module:callable returning an nn.Module)")
        if self.source == "onnx" and not self.path:
            raise ValueError("an onnx model needs 'path' (the .onnx file)")
        if self.options and self.source != "torch":
            raise ValueError("'options' are keyword arguments of a torch model's factory; they apply to source: torch "
                             "only")
        if self.output is not None and self.source != "onnx":
            raise ValueError("'output' names an output of an onnx model; it applies to source: onnx only")
        if self.source == "huggingface" and not self.path:
            raise ValueError("a huggingface model needs 'path' (a local folder with config, weights and tokenizer)")
        return self


SPLIT_FILES = ("train", "val", "test")


class DataSpec(StrictModel):
    source: Literal["builtin", "file", "python", "text"]
    name: str | None = None
    path: Path | None = None
    train: Path | None = None  # a file per split, in place of one `path` split by `split` and `seed`
    val: Path | None = None
    test: Path | None = None
    factory: str | None = None
    target: str | None = None
    split: tuple[Fraction, Fraction, Fraction] = (0.7, 0.1, 0.2)
    seed: int = Field(default=0, ge=0)
    shape: tuple[int, ...] | None = None
    standardize: bool = False
    calibration_samples: int = Field(default=256, ge=1)
    tokenizer: Path | None = None
    max_length: int = Field(default=128, ge=2)
    text_column: str = "text"
    # inputs without labels, read as new data is (a .csv of the input columns, an .npz with x, texts for text data),
    # for what learns from them: transfer.finetune's self_training
    unlabeled: Path | None = None

    @model_validator(mode="after")
    def _each_source_has_what_it_needs(self) -> DataSpec:
        if any(f <= 0 for f in self.split) or abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError(f"split must be three positive fractions summing to 1, got {list(self.split)}")
        split_files = {key: getattr(self, key) for key in SPLIT_FILES}
        if any(split_files.values()):
            if self.source not in ("file", "text") or self.path is not None or self.name is not None \
                    or None in split_files.values():
                raise ValueError(f"give data source '{self.source}' either 'path' (one file, split by 'split' and "
                                 "'seed') or all of 'train', 'val' and 'test' (a file per split)")
            if "split" in self.model_fields_set:
                raise ValueError("'split' divides one 'path'; with train, val and test files the files are the splits")
            if self.source == "file":
                return self
        if self.source == "text":
            if not any(split_files.values()) and (self.path is None) == (self.name is None):
                raise ValueError("text data needs 'path' (.txt, .csv or .jsonl), 'name' of a builtin corpus, or "
                                 "'train', 'val' and 'test' files")
            if self.standardize or self.shape is not None:
                raise ValueError("'standardize' and 'shape' apply to numeric data, not to text")
            if self.tokenizer is None:
                raise ValueError("text data needs 'tokenizer' (a Hugging Face folder; a huggingface model's own "
                                 "folder is used when left out)")
            return self
        needed = {"builtin": "name", "file": "path", "python": "factory"}[self.source]
        if getattr(self, needed) is None:
            alternative = " (or 'train', 'val' and 'test': a file per split)" if self.source == "file" else ""
            raise ValueError(f"data source '{self.source}' needs '{needed}'{alternative}")
        return self


class MetricSpec(StrictModel):
    name: str
    higher_is_better: bool | None = None


class Constraints(StrictModel):
    max_metric_drop: float | None = Field(default=None, ge=0)
    max_latency_ms: float | None = Field(default=None, gt=0)
    # latency over the task's own model's, both timed by the same process (0.5: at least twice as fast)
    max_latency_ratio: float | None = Field(default=None, gt=0)
    max_size_bytes: int | None = Field(default=None, gt=0)
    max_params: int | None = Field(default=None, gt=0)
    max_cost_per_million: float | None = Field(default=None, gt=0)  # USD per million predictions (needs cost:)


class CostSpec(StrictModel):
    """What running the model costs (insight/cost.py): `usd_per_hour` is the price of the machine the model runs on,
    at the task's threads, which turns measured throughput into USD per million predictions; `watts_per_core` is
    what a busy core draws, for the energy estimate where no RAPL counter is readable (energy.py)."""

    usd_per_hour: float | None = Field(default=None, gt=0)
    watts_per_core: float = Field(default=WATTS_PER_CORE, gt=0)


# seconds of timed calls per model and batch size (runtime.timing_s): less for a quick look, more where candidates
# differ by a few percent (a trial's rounds get half of it, the choice of runtime and threads a third per setting)
TIMING_S = 1.5


class RuntimeSpec(StrictModel):
    target: Literal["auto", "torch", "torch.cuda", "torch.compile", "onnxruntime", "openvino"] = "auto"
    threads: int = Field(default_factory=lambda: min(os.cpu_count() or 1, 4), ge=1, le=1024)
    batch_sizes: tuple[Annotated[int, Field(ge=1, le=65536)], ...] = Field(default=(1,), min_length=1)
    timing_s: float = Field(default=TIMING_S, gt=0, le=600)


# search.storage values that name a study only this process can reach (the run directory's SQLite file, memory)
PRIVATE_STORAGES = ("sqlite", "memory")


class SensitivitySpec(StrictModel):
    """Per-layer sensitivity (tradeoff sensitivity; in optimize, it guides the search): each `quantize` step and each
    `prune` amount applied to one layer at a time, the metric drop on validation measured for each. With `guide`, the
    search may keep up to `max_kept` of the most sensitive layers in float (quantize steps' keep_float) or dense
    (prune.magnitude's keep_dense)."""

    quantize: tuple[dict[str, Any], ...] | None = None  # recipe steps; None: int8 and 4-bit weights (insight/)
    prune: tuple[float, ...] = (0.5, 0.8, 0.95)
    guide: bool = True
    max_kept: int = Field(default=3, ge=1)

    @field_validator("prune")
    @classmethod
    def _amounts(cls, amounts: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < a < 1 for a in amounts):
            raise ValueError(f"prune amounts are fractions of a layer's weights, above 0 and below 1, got {amounts}")
        return amounts


class SearchSpec(StrictModel):
    trials: int = Field(default=20, ge=1)
    storage: str = "sqlite"  # the run directory's study.db; "memory"; or an RDB URL that many workers share
    # tune and nas: the whole run's, what follows the search reckoned in (the final training, a rerank)
    timeout_s: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0, lt=2**32)  # what Optuna's samplers (numpy) take
    passes: tuple[str, ...] | None = None  # the menu by name; None: the passes `tags` select
    tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ("opt-in",)
    plugins: tuple[str, ...] = ()  # modules to import for the passes they register
    space: dict[str, Any] = Field(default_factory=dict)  # `stage__field` ranges replacing the passes' own
    heartbeat_s: int = Field(default=5, ge=1)  # how often a worker marks its trial alive (RDB storages)
    finalists: int = Field(default=4, ge=1)
    mlflow: str | None = None  # an MLflow tracking URI: each trial that spent budget is logged there as a run
    sensitivity: SensitivitySpec | None = None  # measure per-layer sensitivity first and let it guide the search
    # recipes measured before the search explores, where its menu and ranges hold them: each a list of steps or
    # the name of a recipe the field found (passes/known_recipes.py)
    try_first: tuple[str | tuple[dict[str, Any], ...], ...] = ()


class EarlyStopping(StrictModel):
    """Stop when the monitored value has not improved by `min_delta` for `patience` epochs.

    `split: holdout` watches a seeded tenth of the training split, so validation stays unseen for the decisions
    made on it; `split: val` is for a model trained from scratch whose user says validation is theirs to spend.
    """

    monitor: Literal["loss", "metric"] = "loss"
    patience: int = Field(default=3, ge=1)
    min_delta: float = Field(default=0.0, ge=0)
    restore_best: bool = True
    split: Literal["holdout", "val"] = "holdout"


class Clipping(StrictModel):
    mode: Literal["norm", "value"] = "norm"
    max: float = Field(default=5.0, gt=0)


# The knobs each kind of sample takes (training/augment.py says what each does to it).
AUGMENT_KNOBS: dict[str, tuple[str, ...]] = {
    "image": ("shift", "rotation", "scale", "noise", "cutout", "mixup", "cutmix"),
    "signal": ("shift", "scale", "noise", "mixup"),
    "tabular": ("scale", "noise", "mixup"),
    "text": ("token_dropout", "span_swap"),
}


class AugmentSpec(StrictModel):
    """Seeded augmentations of each training batch; `kind` says what a sample is, and each knob's meaning follows
    it (see training/augment.py). 0 turns a knob off."""

    kind: Literal["image", "signal", "tabular", "text"]
    shift: float = Field(default=0.0, ge=0, lt=1)  # fraction of the width/height (image) or length (signal)
    rotation: float = Field(default=0.0, ge=0, le=180)  # degrees, image
    scale: float = Field(default=0.0, ge=0, lt=1)  # zoom (image) or amplitude (signal, tabular), +-fraction
    noise: float = Field(default=0.0, ge=0)  # standard deviation of added Gaussian noise, in input units
    cutout: float = Field(default=0.0, ge=0, lt=1)  # side of an erased square, fraction of the image side
    mixup: float = Field(default=0.0, ge=0)  # alpha of the Beta(alpha, alpha) mixing weight (image, signal, tabular)
    cutmix: float = Field(default=0.0, ge=0)  # alpha of the Beta(alpha, alpha) pasted area (image)
    token_dropout: float = Field(default=0.0, ge=0, lt=1)  # probability a token is replaced by padding (text)
    span_swap: float = Field(default=0.0, ge=0, le=1)  # probability two spans of a text trade places (text)

    @model_validator(mode="after")
    def _knobs_fit_the_kind(self) -> AugmentSpec:
        for knob in type(self).model_fields:
            if knob != "kind" and getattr(self, knob) and knob not in AUGMENT_KNOBS[self.kind]:
                kinds = " and ".join(kind for kind, knobs in AUGMENT_KNOBS.items() if knob in knobs)
                raise ValueError(f"{knob} does not apply to kind {self.kind} (it augments {kinds}); leave it out "
                                 f"or set kind to what a sample is")
        return self


class TrainSpec(StrictModel):
    """How the Trainer trains: `tradeoff train`, and the recovery of passes that retrain (which set their own
    epochs and learning rate)."""

    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=64, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["constant", "cosine", "onecycle", "linear"] = "constant"
    warmup_epochs: float = Field(default=0.0, ge=0)  # linear warm-up before the schedule (not with onecycle)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    dropout: float | None = Field(default=None, ge=0, lt=1)  # sets p of the model's own nn.Dropout layers
    clip: Clipping | None = Clipping()
    early_stopping: EarlyStopping | None = EarlyStopping()
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast; fp16 needs a GPU
    gradient_checkpointing: bool = False
    augment: AugmentSpec | None = None
    seed: int = Field(default=0, ge=0, lt=2**32)

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainSpec:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})")
        if self.warmup_epochs and self.schedule == "onecycle":
            raise ValueError("onecycle has its own warm-up; leave warmup_epochs at 0")
        return self


SAMPLERS = ("tpe", "gp", "cmaes", "random", "grid", "nsga2", "evolution", "rl")
TrainedObjective = Literal["metric", "latency", "size", "macs"]
PrunerName = Literal["median", "successive_halving", "hyperband", "wilcoxon", "dominance", "none"]


class SearchDistillation(StrictModel):
    """Train every candidate with the task's own trained model as teacher: the labels and its class probabilities
    softened by `temperature` (Hinton et al.; `weight` of that term, as distill.kd), so the search finds the
    options or the architecture that learn best from it."""

    temperature: float = Field(default=4.0, gt=0)
    weight: float = Field(default=1.0, ge=0)


class TrainedSearch(StrictModel):
    """What a search whose candidates are trained shares: its objectives (an order of priority, as in optimize),
    the pruner that stops a trial behind the others at an epoch, and whether the task's model teaches every
    candidate. Budget, seed and storage are `search:`'s."""

    objectives: tuple[TrainedObjective, ...] = Field(default=("metric",), min_length=1)
    pruner: PrunerName | None = None
    # epochs every trial trains before the pruner may stop it: an architecture that learns slowly but ends best
    # (a global-average-pool CNN on MNIST-1D trails flatten heads until epoch 20-30) is lost to a pruner that judges
    # earlier; successive_halving and hyperband start their first rung here
    pruner_warmup_epochs: int = Field(default=1, ge=1)
    distill: SearchDistillation | None = None

    @model_validator(mode="after")
    def _pruner_fits_the_objectives(self) -> TrainedSearch:
        if self.pruner not in (None, "dominance", "none") and len(self.objectives) > 1:
            raise ValueError(f"pruner {self.pruner} compares one objective; with {len(self.objectives)} objectives use "
                             f"pruner: dominance (the default) or none")
        return self

    @property
    def pruner_name(self) -> str:
        """median for one objective, dominance for several, unless the task names one."""
        return self.pruner or ("median" if len(self.objectives) == 1 else "dominance")


class TuneSpec(TrainedSearch):
    """What `tradeoff tune` searches (see tuning/space.py for the ranges `space` takes)."""

    space: dict[str, Any] = Field(min_length=1)  # `train.<option>` or `model.<factory keyword>` -> range
    sampler: str = "tpe"  # one of SAMPLERS, or module:callable(seed) returning an Optuna sampler
    train_function: str | None = None  # module:callable(module, data, options, report_epoch); None: the Trainer

    @model_validator(mode="after")
    def _known_sampler(self) -> TuneSpec:
        if self.sampler not in SAMPLERS and ":" not in self.sampler:
            raise ValueError(f"unknown sampler '{self.sampler}'; choose one of {', '.join(SAMPLERS)}, or give "
                             f"module:callable returning an Optuna sampler")
        return self


class Rerank(StrictModel):
    """The evaluation strategy's second stage. The search's short training ranks architectures cheaply but not as
    their long training does (on MNIST-1D, picks best on validation after 30 epochs lost 1.8 points to the paper's
    CNN once both trained 6,000 steps), so the `top` best trials are trained again by `train` (options over the
    task's train:, for example a longer schedule) on the training split and judged on validation; the best of them
    is chosen, and the final model is trained so on train+val. Validation may be too small to rank by (500
    samples carry about a point of accuracy noise, as much as the gaps between the best): `folds` judges each by
    cross-validation over train+val instead, at `folds` trainings each."""

    top: int = Field(default=3, ge=2)
    train: dict[str, Any] = Field(default_factory=dict)
    folds: int | None = Field(default=None, ge=2)


class NasSpec(TrainedSearch):
    """What `tradeoff nas` searches: an architecture space (nas/space.py: families, depth, widths, kernels, ...; or
    module:callable), the strategy that samples it, an optional zero-cost proxy that ranks `proxy_candidates`
    random architectures before the search, whose `proxy_top` best are trained first, and an optional `rerank` of
    the best trials by a longer training before the choice."""

    space: dict[str, Any] | str
    strategy: Literal["random", "evolution", "tpe", "rl"] = "tpe"
    proxy: Literal["naswot", "synflow"] | None = None
    proxy_candidates: int = Field(default=100, ge=1)
    proxy_top: int = Field(default=5, ge=1)
    population: int = Field(default=20, ge=2)  # evolution: the most recent trials that breed; random until then
    tournament: int = Field(default=5, ge=1)  # evolution: how many of them compete to be the parent
    rerank: Rerank | None = None

    @model_validator(mode="after")
    def _strategy_fits_the_objectives(self) -> NasSpec:
        if self.rerank is not None and self.objectives[0] != "metric":
            raise ValueError("rerank judges the best trials again by their metric, so metric must be the first of "
                             "objectives")
        if self.strategy in ("evolution", "rl") and len(self.objectives) > 1:
            raise ValueError(f"strategy {self.strategy} follows one objective; bound the others with constraints "
                             f"(max_latency_ratio, max_params, ...) or use strategy tpe or random")
        if self.proxy_top > self.proxy_candidates:
            raise ValueError(f"proxy_top ({self.proxy_top}) cannot exceed proxy_candidates ({self.proxy_candidates})")
        if self.tournament > self.population:
            raise ValueError(f"tournament ({self.tournament}) cannot exceed population ({self.population})")
        return self


PresetName = Literal["realtime", "accuracy-critical", "mobile", "balanced"]
# runs/<name>/ is written to: a name is one plain folder name, never a path that leaves the output folder
RunName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


class Settings(StrictModel):
    """Everything a run needs besides the model and data, which the Python API may give as objects."""

    name: RunName = "run"
    metric: str | MetricSpec = "accuracy"
    preset: PresetName = "balanced"
    constraints: Constraints = Constraints()
    # A list is an order of priority; a mapping gives each objective a weight (see search/select.choose).
    objectives: tuple[str, ...] | dict[str, float] = ("latency", "size")

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, objectives: tuple[str, ...] | dict[str, float]) -> tuple[str, ...] | dict[str, float]:
        if not objectives:
            raise ValueError(f"objectives must name at least one of {', '.join(OBJECTIVES)}")
        if isinstance(objectives, dict) and not all(w > 0 and math.isfinite(w) for w in objectives.values()):
            raise ValueError(f"objective weights must be positive, got {objectives}")
        return objectives
    runtime: RuntimeSpec = RuntimeSpec()
    search: SearchSpec = SearchSpec()
    train: TrainSpec = TrainSpec()
    tune: TuneSpec | None = None
    nas: NasSpec | None = None
    cost: CostSpec = CostSpec()

    @model_validator(mode="after")
    def _one_search_that_trains(self) -> Settings:
        if self.tune is not None and self.nas is not None:
            raise ValueError("a task has a tune: or a nas: section, not both; tune the architecture nas found with "
                             "its nas.yaml")
        return self

    @model_validator(mode="after")
    def _objectives_measured(self) -> Settings:
        if problems := [p for o in self.objectives if (p := unknown_objective(o, self.runtime.batch_sizes))]:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _cost_has_a_price(self) -> Settings:
        """Raised as it is (not a ValueError, which pydantic would wrap with the whole task): one line and the fix."""
        needs = [*(["objective cost"] if any(parse(o)[0] == "cost" for o in self.objectives) else []),
                 *(["constraint max_cost_per_million"] if self.constraints.max_cost_per_million is not None else [])]
        if needs and self.cost.usd_per_hour is None:
            raise ConfigError(f"{' and '.join(needs)} needs the machine's price, and the task gives none",
                              "add cost: {usd_per_hour: <price of the machine the model runs on, USD per hour>}")
        return self


class Task(Settings):
    """A task file: settings plus where the model and data come from."""

    name: RunName
    model: ModelSpec
    data: DataSpec
    _folder: Path | None = PrivateAttr(default=None)  # set by load_task: the task file's folder

    @property
    def import_dirs(self) -> tuple[Path, ...]:
        """Where the task's code (factories, metrics, plugins) is imported from first: the task file's folder."""
        return () if self._folder is None else (self._folder,)

    @model_validator(mode="before")
    @classmethod
    def _text_uses_the_model_tokenizer(cls, raw: Any) -> Any:
        """Text data for a Hugging Face model is tokenized by that model's own folder unless told otherwise."""
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict) or not isinstance(raw.get("data"), dict):
            return raw
        model, data = raw["model"], raw["data"]
        if data.get("source") == "text" and not data.get("tokenizer") and model.get("source") == "huggingface":
            return {**raw, "data": {**data, "tokenizer": model.get("path")}}
        return raw


# What each use case optimizes for, and the passes it searches, selected by the tags passes declare (a pass is
# in the menu when it has one of `tags` and none of `exclude_tags`); anything the task file states wins over these.
# Accuracy-critical work gets only the passes that need no retraining and keep 8 bits or more; the others may
# fine-tune (pruning, weight sharing). Passes tagged opt-in are searched only where a task names them.
PRESETS: dict[str, dict[str, Any]] = {
    "realtime": {
        "objectives": ["latency"],
        "constraints": {"max_metric_drop": 0.01},
        "search": {"tags": ["speed", "export"], "exclude_tags": ["opt-in"]},
    },
    "accuracy-critical": {
        "objectives": ["latency", "size"],
        "constraints": {"max_metric_drop": 0.002},
        "search": {"tags": ["speed", "size", "export"], "exclude_tags": ["retrains", "low-bit", "opt-in"]},
    },
    "mobile": {
        "objectives": ["size", "latency"],
        "constraints": {"max_metric_drop": 0.01},
        "search": {"tags": ["size", "export", "lossless"], "exclude_tags": ["opt-in"],
                   "try_first": ["deep-compression"]},
    },
    "balanced": {
        "objectives": ["latency", "size"],
        "constraints": {"max_metric_drop": 0.01},
        "search": {"tags": ["speed", "size", "export", "lossless"], "exclude_tags": ["opt-in"]},
    },
}


def _merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths in a task file are relative to the file, so a task runs the same from any directory."""
    resolved = dict(raw)
    for section, keys in (("model", ("weights", "path")), ("data", ("path", *SPLIT_FILES, "tokenizer", "unlabeled"))):
        if isinstance(resolved.get(section), dict):
            block = dict(resolved[section])
            for key in keys:
                if isinstance(block.get(key), str) and not Path(block[key]).is_absolute():
                    block[key] = str(base / block[key])
            resolved[section] = block
    return resolved


S = TypeVar("S", bound=Settings)


def task_from_dict(raw: dict[str, Any], base: Path | None = None, where: str = "task",
                   model: type[S] = Task) -> S:  # type: ignore[assignment]
    """Validate a task (or bare settings) given as a dict, after filling in its preset's defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(raw).__name__}")
    preset = raw.get("preset", "balanced")
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}' in {where}", f"choose one of {', '.join(PRESETS)}")
    merged = _merge(PRESETS[preset], _resolve_paths(raw, base) if base else raw)
    return validate(model, merged, where)


def load_task(path: str | Path) -> Task:
    """A task file, its relative paths and import paths resolved from the file's folder, not the caller's."""
    path = Path(path)
    folder = path.resolve().parent
    task: Task = task_from_dict(read_yaml(path, "task file"), base=folder, where=str(path))
    task._folder = folder
    return task
