"""Decoder evaluation: rewrite the base model over a grid of (feature factor, learning rate) cells and
measure, per cell, the class probabilities at the masked position and the LMS on neutral text.

Class probability ("feature score") of class C on a row (a sentence with a literal "[MASK]"): the sum
over C's words (and their case variants that are single vocabulary tokens) of P(word); the row's inputs
and the scored pieces are the base model's prediction objective's (`Objective.scoring_inputs`,
`Objective.scored_pieces`, gradiend_core/objectives/):
  MLM: a k-piece word is scored by expanding the first [MASK] to k mask tokens and multiplying the k
       piece probabilities.
  CLM: the unique first pieces of " word", as the next token after the prefix that precedes the first
       [MASK] (encoded like extraction's inputs).
  Sequence cloze (objectives with `scores_sequences`, e.g. clm_sequence_cloze): the row filled with each
       candidate word, scored by the sum of its labelled tokens' log-probabilities (`sequence_row`:
       the word and its right context); a softmax across the row's candidates, summed per class.
Strengthen metric for C: mean P(C) over the rows of the other class(es); weaken metric for C:
1 - mean P(C) over C's own rows. Strengthening C only looks at cells whose feature factor is
feature_factor(C); weakening C at cells whose feature factor belongs to another class.

Paired intervals: every cell is scored on the same LMS positions and probability rows as the base model,
and the table keeps the per-item scores (GridResult.scores), so each cell gets paired bootstrap intervals
against the base model (gradiend_core/grid_stats.py): the LMS difference (lms_diff, _lo, _hi) and the
one-sided p-value that the cell's LMS is below the base's (lms_p), over LMS positions; the change of every
mean P(C) on D's rows (change_<C>_on_<D>, _lo, _hi), over rows. The selection policy
(`decoder_grid.policy`, selection.py) picks one cell per metric; each summary entry carries the metric's
change and the LMS difference with their intervals.

Deviation from the reference: every cell is applied to the base model in place and reverted bit-exactly
(`Gradiend.applied`) instead of deep-copying the model per cell, and every cell scores the rows of
every class (the reference scores only the rows its metric needs), so the full table is available for
plots. (Every cell's LMS uses the same mask positions, as in the reference.)
Deviation from the reference: the LMS can be the mean log-probability of the scored tokens
(`decoder_grid.lms: log_prob`, reported as its exp) instead of the accuracy, and a cell can be selected
by a paired significance test (`lms_significance`) instead of the ratio threshold.
Deviation from the reference: with more than two classes the strengthen metric pools the rows of all
other classes (the reference reads a single "other class").
Deviation from the reference: CLM targets use the leading-space form of the word (" he") for
byte-level tokenizers; a row whose [MASK] starts the sentence is scored after the BOS token.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch

from gradiend_core.errors import ConfigError, DataError, GradiendError
from gradiend_core.grid_stats import ARRAY_KEYS, Bootstrap, GridScores, interval_columns
from gradiend_core.lms import LMS_KINDS, PreparedLMS, lms_values, prepare_lms
from gradiend_core.objectives import get_objective
from gradiend_core.objectives.base import Encoded, Objective, collate, pad_id
from gradiend_core.selection import POLICY_NAMES, get_policy
DEFAULT_LEARNING_RATES = (100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1,
                          0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
PARTS = ("decoder", "decoder-weight", "decoder-bias", "decoder-sum", "encoder-weight")


@dataclass
class DecoderGridConfig:
    learning_rates: list[float] | None = None   # None -> the reference's 16 values (100 ... 0.001)
    feature_factors: list[float] | None = None  # None -> gradiend.feature_factor(C) for every class
    max_rows_per_class: int | None = 30         # cap of probability rows per factual class (seeded sample)
    lms_max_texts: int | None = 60              # cap of neutral texts for the LMS
    batch_size: int = 32
    # which cell rewrites: lms_threshold (the reference's) keeps cells with lms >= lms_ratio x base;
    # lms_significance keeps a cell unless its LMS is significantly below the base model's (paired
    # bootstrap, one-sided at `alpha`); lms_times_metric maximises metric x lms. Held-out measurement
    # (README, bench/decoder_policies.py): lms_threshold on log_prob selected best
    policy: Literal["lms_threshold", "lms_times_metric", "lms_significance"] = "lms_threshold"
    lms_ratio: float = 0.99                     # lms_threshold keeps cells with lms >= ratio * base_lms
    alpha: float = 0.05                         # lms_significance drops cells with bootstrap p < alpha
    # log_prob: exp(mean log-probability of the masked (MLM) or next (CLM) tokens), a continuous score;
    # accuracy: the family's reference LMS (MLM: top-1 accuracy at the masked tokens; CLM: 1/(1+NLL))
    lms: Literal["accuracy", "log_prob"] = "log_prob"
    bootstrap: int = 1000                       # paired bootstrap resamples (LMS positions; probability rows)
    ci_level: float = 0.95                      # two-sided level of the intervals in the table and plots
    part: Literal["decoder", "decoder-weight", "decoder-bias", "decoder-sum", "encoder-weight"] = "decoder"
    seed: int = 42                              # row sample, LMS masks and bootstrap resamples

    def validate(self) -> "DecoderGridConfig":
        for name in ("learning_rates", "feature_factors"):
            vals = getattr(self, name)
            if vals is not None and (len(vals) == 0 or not all(_finite(v) for v in vals)):
                raise ConfigError(f"{name} must be a non-empty list of finite numbers, or null for the default; got {vals}")
            repeated = [v for i, v in enumerate(vals or []) if float(v) in map(float, vals[:i])]
            if repeated:
                raise ConfigError(f"{name} lists {repeated[0]:g} twice; list each value once")
        bad = [v for v in self.learning_rates or [] if v <= 0]
        if bad:
            raise ConfigError(f"learning_rates holds {bad[0]:g}: a cell with learning rate <= 0 leaves the base model "
                              f"unchanged (0) or moves it against the cell's feature factor (< 0); list rates > 0 "
                              f"(the feature factors' signs set the direction)")
        for name in ("max_rows_per_class", "lms_max_texts"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive integer or null, got {v!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.policy not in POLICY_NAMES:
            raise ConfigError(f"unknown decoder selection policy {self.policy!r}; use one of {list(POLICY_NAMES)}")
        if not (_finite(self.lms_ratio) and self.lms_ratio > 0):
            raise ConfigError(f"lms_ratio must be a positive number (e.g. 0.99), got {self.lms_ratio}")
        self._validate_intervals()
        if self.part not in PARTS:
            raise ConfigError(f"unknown rewrite part {self.part!r}; use one of {list(PARTS)}")
        return self

    def _validate_intervals(self) -> None:
        if self.lms not in LMS_KINDS:
            raise ConfigError(f"lms {self.lms!r} is not an LMS kind; use one of {list(LMS_KINDS)}")
        if not (_finite(self.alpha) and 0.0 < self.alpha < 1.0):
            raise ConfigError(f"alpha must be a number in (0, 1) (e.g. 0.05), got {self.alpha}")
        if not (_finite(self.ci_level) and 0.0 < self.ci_level < 1.0):
            raise ConfigError(f"ci_level must be a number in (0, 1) (e.g. 0.95), got {self.ci_level}")
        if not isinstance(self.bootstrap, int) or self.bootstrap < 1:
            raise ConfigError(f"bootstrap must be a positive integer (resamples, e.g. 1000), got {self.bootstrap!r}")

    def lrs(self) -> list[float]:
        """Learning rates in ascending order (the reference's sorted (ff, lr) cell order)."""
        return sorted({float(v) for v in (self.learning_rates or DEFAULT_LEARNING_RATES)})


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- probability rows

@dataclass
class _Group:
    """Rows encoded for one candidate length k (MLM: k masks; CLM: k=1, the next token)."""

    batches: list[dict[str, torch.Tensor]]  # input_ids/attention_mask (B,T), positions (B,k), rows (B,)
    cand_ids: torch.Tensor                  # (M, k) piece ids of each candidate word
    cand_class: torch.Tensor                # (M,) class index of each candidate


@dataclass
class _SequenceGroup:
    """Every (row, candidate) pair as one filled sentence (objectives with scores_sequences)."""

    batches: list[tuple[Encoded, torch.Tensor]]  # padded filled sentences; each one's index row * M + candidate
    cand_class: torch.Tensor                     # (M,) class index of each candidate


@dataclass
class ProbabilityRows:
    """Encoded probability rows, reusable across grid cells."""

    objective: Objective
    classes: list[str]          # classes whose probability is measured (class_words order)
    dataset_classes: list[str]  # factual classes of the rows
    row_dataset: torch.Tensor   # (N,) index into dataset_classes
    groups: list[_Group | _SequenceGroup] = field(repr=False)
    candidates: dict[str, list[str]] = field(default_factory=dict)  # class -> candidate strings (for reports)

    @property
    def n_rows(self) -> int:
        return int(self.row_dataset.numel())


def _case_variants(word: str) -> list[str]:
    w = word.strip()
    return list(dict.fromkeys([w, w.lower(), w.capitalize(), w.upper()]))


def _candidates(tokenizer, objective: Objective, words: Sequence[str]) -> dict[tuple[int, ...], str]:
    """piece-id tuple -> surface form. The given word always counts (any number of pieces); a case
    variant only when it is one vocabulary token (so "HE" -> "H", "##E" does not add noise)."""
    out: dict[tuple[int, ...], str] = {}
    for word in words:
        for i, form in enumerate(_case_variants(word)):
            try:
                ids = objective.target_token_ids(tokenizer, form)
            except GradiendError:
                if i == 0:
                    raise
                continue
            if i > 0 and len(ids) != 1:
                continue
            out.setdefault(tuple(objective.scored_pieces(ids)), form)
    return out


def _class_candidates(tokenizer, objective, class_words) -> tuple[dict[int, tuple[list, list]], dict]:
    """k -> (piece tuples, class indices); plus class -> candidate strings."""
    by_k: dict[int, tuple[list, list]] = {}
    names: dict[str, list[str]] = {}
    for ci, (cls, words) in enumerate(class_words.items()):
        cands = _candidates(tokenizer, objective, words)
        names[cls] = list(cands.values())
        for ids in cands:
            ks = by_k.setdefault(len(ids), ([], []))
            ks[0].append(list(ids))
            ks[1].append(ci)
    return by_k, names


def _collate_rows(encoded: list[tuple[list[int], list[int]]], row_ids: list[int], pad: int) -> dict:
    T = max(len(e[0]) for e in encoded)
    ids = torch.full((len(encoded), T), pad, dtype=torch.long)
    att = torch.zeros((len(encoded), T), dtype=torch.long)
    for i, (seq, _) in enumerate(encoded):
        ids[i, : len(seq)] = torch.tensor(seq)
        att[i, : len(seq)] = 1
    pos = torch.tensor([e[1] for e in encoded], dtype=torch.long)  # (B, k)
    return {"input_ids": ids, "attention_mask": att, "positions": pos, "rows": torch.tensor(row_ids)}


def prepare_probability_rows(tokenizer, objective: str | Objective, rows_df: pd.DataFrame,
                             class_words: Mapping[str, Sequence[str]], batch_size: int = 32,
                             max_length: int = 512) -> ProbabilityRows:
    """Encode every row once per candidate length; rows whose factual class has no words are dropped.
    objective: a registered name ("mlm", "clm", ...) or an Objective."""
    obj = get_objective(objective)
    obj.check_tokenizer(tokenizer)
    class_words = _check_class_words(class_words)
    df = _check_rows(rows_df, class_words)
    dataset_classes = [c for c in class_words if c in set(df["factual_class"])]
    row_dataset = torch.tensor([dataset_classes.index(c) for c in df["factual_class"]], dtype=torch.long)
    by_k, names = _class_candidates(tokenizer, obj, class_words)
    masked, pad, groups = list(df["masked"]), pad_id(tokenizer), []
    if obj.scores_sequences:  # one group: every row filled with every candidate
        groups.append(_sequence_group(tokenizer, obj, masked, names, batch_size, max_length))
        by_k = {}
    for k in sorted(by_k):
        enc = [obj.scoring_inputs(tokenizer, m, k, max_length) for m in masked]
        batches = [_collate_rows(enc[i: i + batch_size], list(range(i, min(i + batch_size, len(enc)))), pad)
                   for i in range(0, len(enc), batch_size)]
        groups.append(_Group(batches, torch.tensor(by_k[k][0], dtype=torch.long),
                             torch.tensor(by_k[k][1], dtype=torch.long)))
    return ProbabilityRows(obj, list(class_words), dataset_classes, row_dataset, groups, names)


def _sequence_group(tokenizer, obj: Objective, masked: list[str], names: dict[str, list[str]], batch_size: int,
                    max_length: int) -> _SequenceGroup:
    """Each row filled with each candidate word (`Objective.sequence_row`), in row-major order."""
    forms = [(ci, form) for ci, cands in enumerate(names.values()) for form in cands]
    seqs = [obj.sequence_row(tokenizer, m, form, max_length) for m in masked for _, form in forms]
    pad = pad_id(tokenizer)
    batches = [(collate(seqs[i: i + batch_size], pad), torch.arange(i, min(i + batch_size, len(seqs))))
               for i in range(0, len(seqs), batch_size)]
    return _SequenceGroup(batches, torch.tensor([ci for ci, _ in forms], dtype=torch.long))


def _score_sequences(model, obj: Objective, g: _SequenceGroup, n_rows: int, n_classes: int) -> torch.Tensor:
    """P(class) per row, (N, C) float64: softmax over each row's candidates of log P(candidate sequence)."""
    dev, M = next(model.parameters()).device, g.cand_class.numel()
    logp = torch.empty(n_rows * M, dtype=torch.float64)
    for enc, index in g.batches:
        on = Encoded(*(t.to(dev) for t in (enc.input_ids, enc.attention_mask, enc.rows, enc.cols, enc.labels)))
        logp[index] = obj.sequence_log_probs(model, on).cpu()
    p = logp.view(n_rows, M).softmax(-1)  # (N, M)
    return torch.zeros((n_rows, n_classes), dtype=torch.float64).index_add_(1, g.cand_class, p)


def _check_class_words(class_words) -> dict[str, list[str]]:
    if not class_words:
        raise ConfigError("class_words is empty; give each class its target words, e.g. {'3SG': ['he', 'she']}")
    out = {str(c): [str(w) for w in ws if str(w).strip()] for c, ws in class_words.items()}
    empty = [c for c, ws in out.items() if not ws]
    if empty:
        raise ConfigError(f"classes {empty} have no target words; give each class at least one word")
    return out


def _check_rows(rows_df: pd.DataFrame, class_words: Mapping) -> pd.DataFrame:
    if rows_df is None or len(rows_df) == 0:
        raise DataError("no decoder evaluation rows; pass the held-out rows (columns masked, factual_class)")
    missing = [c for c in ("masked", "factual_class") if c not in rows_df.columns]
    if missing:
        raise DataError(f"decoder rows lack columns {missing}; pass the unified table (masked, factual_class, split)")
    df = rows_df.assign(factual_class=rows_df["factual_class"].astype(str))
    df = df[df["factual_class"].isin(list(class_words))]
    if len(df) == 0:
        raise DataError(f"no decoder row belongs to the classes {list(class_words)}; check factual_class values")
    return df.reset_index(drop=True)


@torch.no_grad()
def score_probabilities(model, prepared: ProbabilityRows) -> torch.Tensor:
    """P(class) per row -> (N, C) float64 (sum over each class's candidate words)."""
    dev = next(model.parameters()).device
    out = torch.zeros((prepared.n_rows, len(prepared.classes)), dtype=torch.float64)
    for g in prepared.groups:
        if isinstance(g, _SequenceGroup):
            out += _score_sequences(model, prepared.objective, g, prepared.n_rows, len(prepared.classes))
            continue
        cand_ids, cand_class = g.cand_ids.to(dev), g.cand_class
        k = cand_ids.shape[1]
        for b in g.batches:
            pos = b["positions"].to(dev)                                                # (B, k)
            B = pos.shape[0]
            rows = torch.arange(B, device=dev).repeat_interleave(k)
            at = prepared.objective.logits_at(model, b["input_ids"].to(dev), b["attention_mask"].to(dev), rows,
                                              pos.reshape(-1)).reshape(B, k, -1)        # (B, k, V)
            probs = at.float().softmax(-1)
            p = torch.ones((B, cand_ids.shape[0]), device=dev)  # (B, M)
            for j in range(k):
                p = p * probs[:, j, cand_ids[:, j]]  # piece j of every candidate at mask j
            out[b["rows"]] += torch.zeros((B, out.shape[1]), dtype=torch.float64).index_add_(
                1, cand_class, p.double().cpu())
    return out


def _dataset_means(probs: torch.Tensor, prepared: ProbabilityRows) -> dict[str, float]:
    """{"prob_<C>_on_<D>": mean P(C) over D's rows}."""
    cols = {}
    for di, d in enumerate(prepared.dataset_classes):
        sel = prepared.row_dataset == di
        means = probs[sel].mean(0)
        for ci, c in enumerate(prepared.classes):
            cols[prob_column(c, d)] = float(means[ci])
    return cols


def prob_column(cls: str, dataset: str) -> str:
    return f"prob_{cls}_on_{dataset}"


# ----------------------------------------------------------------------------- the grid

@dataclass
class GridResult:
    table: pd.DataFrame              # one row per cell (base first): is_base, feature_factor, learning_rate, lms,
                                     # prob_*, and the paired intervals (lms_diff*, lms_p, change_*)
    base_lms: float
    summary: dict[str, dict]         # "<C>" (strengthen) and "<C>_weaken" -> selected cell
    classes: list[str]
    dataset_classes: list[str]
    rows_per_class: dict[str, int]
    feature_factors: dict[str, float]  # class -> feature factor that strengthens it
    config: dict = field(default_factory=dict)
    scores: GridScores | None = field(default=None, repr=False)  # per LMS position / probability row

    def base_row(self) -> pd.Series:
        return self.table[self.table["is_base"]].iloc[0]

    def cell(self, feature_factor: float, learning_rate: float) -> pd.Series:
        t = self.table[~self.table["is_base"]]
        hit = t[(t["feature_factor"] == float(feature_factor)) & (t["learning_rate"] == float(learning_rate))]
        if hit.empty:
            raise DataError(f"no grid cell ff={feature_factor}, lr={learning_rate}; use a value from the grid")
        return hit.iloc[0]

    def strengthen_metric(self, row: pd.Series, cls: str) -> float:
        """Row-weighted mean P(cls) over the rows of every other dataset class (nan if none)."""
        others = [d for d in self.dataset_classes if d != cls]
        n = sum(self.rows_per_class[d] for d in others)
        if n == 0:
            return float("nan")
        return sum(self.rows_per_class[d] * float(row[prob_column(cls, d)]) for d in others) / n

    def weaken_metric(self, row: pd.Series, cls: str) -> float:
        if cls not in self.dataset_classes:
            return float("nan")
        return 1.0 - float(row[prob_column(cls, cls)])

    def metric_rows(self, cls: str, strengthen: bool) -> list[str]:
        """The dataset classes whose rows a metric is measured on."""
        return [d for d in self.dataset_classes if (d != cls) == strengthen]

    def metric_change(self, cls: str, strengthen: bool) -> dict[str, np.ndarray]:
        """Per table row: the metric's change vs the base model, with its bootstrap interval over rows
        (weakening: the change of 1 - P(cls), i.e. the negated change of P(cls))."""
        if self.scores is None:
            raise DataError("this grid has no per-row scores (an older output); re-run decoder-grid")
        ch = self.bootstrap().change(self.classes.index(cls),
                                     [self.dataset_classes.index(d) for d in self.metric_rows(cls, strengthen)])
        return ch if strengthen else {"diff": -ch["diff"], "lo": -ch["hi"], "hi": -ch["lo"]}

    def bootstrap(self) -> Bootstrap:
        cfg = self.config or {}
        base = int(np.flatnonzero(self.table["is_base"].to_numpy())[0])
        return Bootstrap(self.scores, int(cfg.get("bootstrap", 1000)), int(cfg.get("seed", 42)),
                         float(cfg.get("ci_level", 0.95)), base)

    def to_json(self) -> dict:
        return {"table": self.table.to_dict(orient="records"), "base_lms": self.base_lms, "summary": self.summary,
                "classes": self.classes, "dataset_classes": self.dataset_classes,
                "rows_per_class": self.rows_per_class, "feature_factors": self.feature_factors,
                "config": self.config}


def _cap_rows(rows: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    if cap is None:
        return rows
    parts = [g.sample(frac=1.0, random_state=seed).head(cap) for _, g in rows.groupby("factual_class", sort=False)]
    return pd.concat(parts).sort_index()


def _class_feature_factors(gradiend, classes: Sequence[str]) -> dict[str, float]:
    """class -> ff that strengthens it; classes the GRADIEND has no orientation for are left out."""
    out = {}
    for c in classes:
        try:
            ff = float(gradiend.feature_factor(c))
        except GradiendError:  # a class the GRADIEND was not trained on
            continue
        if ff != 0.0:
            out[c] = ff
    return out


@dataclass
class PreparedGrid:
    """Everything a cell needs besides the model: encoded rows, LMS inputs and the cell list.

    Model-independent and deterministic (seeded row cap, seeded LMS masks, fixed batches), so every
    part of a fanned-out grid rebuilds the same inputs and scores each cell on the same batches.
    """

    rows: ProbabilityRows
    lms: PreparedLMS
    feature_factors: dict[str, float]  # class -> feature factor that strengthens it
    cells: list[tuple[float, float]]   # canonical order: feature factor, then learning rate, ascending
    cfg: DecoderGridConfig

    def layout(self) -> dict:
        """What assembling the table needs besides the scored records (JSON-able)."""
        rows = self.rows
        counts = {d: int((rows.row_dataset == i).sum()) for i, d in enumerate(rows.dataset_classes)}
        return {"classes": list(rows.classes), "dataset_classes": list(rows.dataset_classes),
                "rows_per_class": counts, "feature_factors": dict(self.feature_factors),
                "row_dataset": [int(i) for i in rows.row_dataset], "objective": rows.objective.name}


def prepare_grid(tokenizer, objective: str | Objective, gradiend, rows: pd.DataFrame, neutral_texts: list[str],
                 class_words: Mapping[str, Sequence[str]], cfg: DecoderGridConfig | None = None) -> PreparedGrid:
    """Encode the probability rows and LMS inputs once and list the cells; no model work."""
    cfg = (cfg or DecoderGridConfig()).validate()
    objective = get_objective(objective)
    objective.check_tokenizer(tokenizer)  # before any model work
    class_words = _check_class_words(class_words)
    rows = _cap_rows(_check_rows(rows, class_words), cfg.max_rows_per_class, cfg.seed)
    prepared = prepare_probability_rows(tokenizer, objective, rows, class_words, cfg.batch_size)
    lms = prepare_lms(tokenizer, neutral_texts, objective, seed=cfg.seed, batch_size=cfg.batch_size,
                      max_texts=cfg.lms_max_texts)
    ff_by_class = _class_feature_factors(gradiend, list(class_words))
    ffs = sorted({float(f) for f in (cfg.feature_factors if cfg.feature_factors is not None else ff_by_class.values())})
    if not ffs:
        raise ConfigError("no class has a non-zero encoding direction, so there is no feature factor to try; "
                          "set decoder feature_factors explicitly (e.g. [-1, 1])")
    return PreparedGrid(prepared, lms, ff_by_class, [(ff, lr) for ff in ffs for lr in cfg.lrs()], cfg)


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _scores(model, grid: PreparedGrid) -> dict:
    """The scalars of a table row, plus the per-item lists the intervals need (grid_stats.ARRAY_KEYS):
    the score of every LMS position and P(class) of every probability row."""
    values = lms_values(model, grid.lms, grid.cfg.lms)                 # (n,)
    probs = score_probabilities(model, grid.rows)                       # (N, C)
    scored = grid.rows.objective.lms_summary(values, grid.cfg.lms)
    cell = {"lms": float(scored["lms"]), **_dataset_means(probs, grid.rows)}
    if "perplexity" in scored:
        cell["perplexity"] = float(scored["perplexity"])
    return {**cell, "lms_values": values.tolist(), "row_probs": probs.tolist()}


def base_record(model, grid: PreparedGrid) -> dict:
    """The table's first row: the unmodified model."""
    with _eval_mode(model):
        return {"is_base": True, "feature_factor": 0.0, "learning_rate": 0.0, **_scores(model, grid)}


def cell_record(model, gradiend, grid: PreparedGrid, feature_factor: float, learning_rate: float) -> dict:
    """One cell, scored with the rewrite applied in place; the model is restored bit-exactly after, so
    a cell's numbers do not depend on which cells (or which task) came before it."""
    with _eval_mode(model), gradiend.applied(model, lr=learning_rate, feature_factor=feature_factor,
                                             part=grid.cfg.part):
        return {"is_base": False, "feature_factor": float(feature_factor), "learning_rate": float(learning_rate),
                **_scores(model, grid)}


def score_cells(model, gradiend, grid: PreparedGrid, cells: Sequence[tuple[float, float]],
                progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Records of the given cells, in the given order; progress(done, len(cells)) after each."""
    records = []
    for i, (ff, lr) in enumerate(cells, start=1):
        records.append(cell_record(model, gradiend, grid, ff, lr))
        if progress:
            progress(i, len(cells))
    return records


def grid_result(records: list[dict], layout: Mapping, cfg: DecoderGridConfig) -> GridResult:
    """The table (base record first, then the cells in canonical order) with the paired bootstrap
    intervals of every cell against the base record, and the selected cells."""
    scalars = [{k: v for k, v in r.items() if k not in ARRAY_KEYS} for r in records]
    scores = GridScores.from_records(records, layout["row_dataset"])
    result = GridResult(pd.DataFrame.from_records(scalars), records[0]["lms"], {}, list(layout["classes"]),
                        list(layout["dataset_classes"]), dict(layout["rows_per_class"]),
                        dict(layout["feature_factors"]), asdict(cfg), scores)
    objective = get_objective(layout["objective"])
    cols = interval_columns(result.bootstrap(), lambda m: objective.lms_from_mean(m, cfg.lms),
                            result.classes, result.dataset_classes)
    result.table = pd.concat([result.table, pd.DataFrame(cols)], axis=1)
    result.summary = summarize(result, cfg)
    return result


def evaluate_decoder_grid(model, tokenizer, objective: str | Objective, gradiend, rows: pd.DataFrame,
                          neutral_texts: list[str], class_words: Mapping[str, Sequence[str]],
                          cfg: DecoderGridConfig | None = None,
                          progress: Callable[[int, int], None] | None = None) -> GridResult:
    """Score the base model and every (ff, lr) rewrite; select one cell per strengthen/weaken metric.

    progress(done, n_cells) is called after each cell (base included).
    """
    grid = prepare_grid(tokenizer, objective, gradiend, rows, neutral_texts, class_words, cfg)
    return evaluate_prepared(model, gradiend, grid, progress)


def evaluate_prepared(model, gradiend, grid: PreparedGrid,
                      progress: Callable[[int, int], None] | None = None) -> GridResult:
    """The whole grid in one process: the base record, then every cell in canonical order."""
    n = len(grid.cells) + 1
    records = [base_record(model, grid)]
    if progress:
        progress(1, n)
    records += score_cells(model, gradiend, grid, grid.cells, progress and (lambda i, _: progress(i + 1, n)))
    return grid_result(records, grid.layout(), grid.cfg)


# ----------------------------------------------------------------------------- selection

def policy_for(cfg: DecoderGridConfig):
    """The configured selection policy with its option (lms_threshold: ratio; lms_significance: alpha)."""
    options = {"lms_threshold": {"ratio": cfg.lms_ratio}, "lms_significance": {"alpha": cfg.alpha}}
    return get_policy(cfg.policy, **options.get(cfg.policy, {}))


def summarize(result: GridResult, cfg: DecoderGridConfig) -> dict[str, dict]:
    """Pick one cell per metric: "<C>" strengthens C, "<C>_weaken" weakens C. Each entry carries the
    metric's change vs the base model and the LMS difference, with their paired bootstrap intervals."""
    policy = policy_for(cfg)
    base = result.base_row()
    out = {}
    for cls, ff in result.feature_factors.items():
        other_ffs = {f for c, f in result.feature_factors.items() if c != cls and f != ff}
        for key, strengthen in ((cls, True), (f"{cls}_weaken", False)):
            metric = result.strengthen_metric if strengthen else result.weaken_metric
            base_value = metric(base, cls)
            if not math.isfinite(base_value):
                continue  # no rows to measure this metric on
            t = result.table
            keep = (~t["is_base"]) & (t["feature_factor"] == ff if strengthen else t["feature_factor"].isin(other_ffs))
            cands = [{"feature_factor": float(r["feature_factor"]), "learning_rate": float(r["learning_rate"]),
                      "lms": float(r["lms"]), "lms_p": float(r["lms_p"]), "metric": metric(r, cls), "row": int(i)}
                     for i, r in t[keep].iterrows()]
            chosen = policy.select(cands, result.base_lms)
            out[key] = _summary_entry(result, chosen, base_value, cls, strengthen, policy.name)
    return out


def _summary_entry(result: GridResult, chosen: dict | None, base_value: float, cls: str, strengthen: bool,
                   policy: str) -> dict:
    base_lms = result.base_lms
    row = int(np.flatnonzero(result.table["is_base"].to_numpy())[0]) if chosen is None else chosen["row"]
    t, ch = result.table.iloc[row], result.metric_change(cls, strengthen)
    stats = {"change": float(ch["diff"][row]), "change_lo": float(ch["lo"][row]), "change_hi": float(ch["hi"][row]),
             "lms_diff": float(t["lms_diff"]), "lms_diff_lo": float(t["lms_diff_lo"]),
             "lms_diff_hi": float(t["lms_diff_hi"]), "lms_p": float(t["lms_p"]),
             "n_rows": int(sum(result.rows_per_class[d] for d in result.metric_rows(cls, strengthen)))}
    common = {"base_lms": base_lms, "base_value": base_value, "policy": policy, "strengthen": strengthen, **stats}
    if chosen is None:  # no candidate cell for this metric: report the unmodified model
        return {"value": base_value, "feature_factor": 0.0, "learning_rate": 0.0, "lms": base_lms, "id": "base",
                **common}
    return {"value": chosen["metric"], "feature_factor": chosen["feature_factor"],
            "learning_rate": chosen["learning_rate"], "lms": chosen["lms"],
            "id": {"feature_factor": chosen["feature_factor"], "learning_rate": chosen["learning_rate"]}, **common}


def decoder_rows(df: pd.DataFrame, pair: tuple[str, str] | None = None, split_col: str = "split") -> pd.DataFrame:
    """Held-out rows for the decoder (reference split role): test, else validation, else train; with `pair`
    (the GRADIEND's classes) only its A->B and B->A transitions, so that a sentence with several
    alternatives (more classes, identity rows) is scored once, as in the reference's pair-only data."""
    if pair is not None and {"factual_class", "alternative_class"} <= set(df.columns):
        a, b = pair
        f, t = df["factual_class"], df["alternative_class"]
        df = df[((f == a) & (t == b)) | ((f == b) & (t == a))]
    if split_col not in df.columns:
        return df
    for split in ("test", "validation", "train"):
        sel = df[df[split_col] == split]
        if len(sel):
            return sel
    raise DataError(f"no row has split test/validation/train in column {split_col!r}; fix the split labels")
