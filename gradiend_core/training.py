"""GRADIEND training loop: fit x_hat = dec(enc(source)) to target with MSE, pick the best checkpoint.

P = input dim, L = latent dim, G = gradient vectors per optimizer step, N = eval rows.

Reference behaviour kept: AdamW (lr 1e-5, weight decay 1e-2 on all params incl. biases, eps 1e-8,
betas 0.9/0.999), constant LR, no clipping, MSE mean over G*P; evaluation at step 0 (before any
update), every `eval_steps` and at the last step; Pearson(label, encoding) on the eval rows; sign
normalisation at an eval with correlation < -0.6 (L == 1) via `invert_()` (W_e, b_e, W_d and b_d
negated); best checkpoint = strict |correlation| improvement over everything seen so far, where the
step-0 score sets the bar but is never selectable; single-run convergence uses |correlation|.
Seeds change only the GRADIEND initialisation; batch order is whatever `batches` yields.

Deviation from the reference: when the model is sign-flipped, the optimizer's first moments
(exp_avg) are negated too, so the update direction stays consistent with the mirrored weights (the
reference leaves the AdamW state untouched, so the first steps after a flip push against it).
Second moments are sign-free and unchanged.
Deviation from the reference: with do_eval=False or an empty eval set the FINAL model is returned
and convergence is reported as unknown (None); the reference keeps the step-1 model and reports
non-convergence.
Deviation from the reference: if no eval after step 0 beats the step-0 score, the final model is kept
and the run is non-convergent (as in the reference), but `stats["best"]` reports the last step's
metrics (the reference reports step 0's score).
Deviation from the reference: only summary metrics are stored per eval step, never per-row values.
Deviation from the reference: a NaN/inf loss stops training with TrainingDivergedError.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from gradiend_core.devices import describe, parse_device, resolve_decoder_device, resolve_device
from gradiend_core.errors import ConfigError, DataError, GradiendError
from gradiend_core.metrics import pearson
from gradiend_core.model import GradiendModel, canonical_activation

logger = logging.getLogger(__name__)

FLIP_BELOW = -0.6  # reference: flip at corr < -0.6 (its log message says -0.5)
TARGET_KEYS = ("1", "-1")

Batch = tuple[torch.Tensor, torch.Tensor]  # (source (G,P), target (G,P))
ProgressFn = Callable[[int, "int | None", dict], None]


class TrainingDivergedError(GradiendError):
    """The GRADIEND loss became NaN/inf."""


@dataclass
class TrainConfig:
    learning_rate: float = 1e-5
    weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    optim: Literal["adamw", "adam"] = "adamw"  # adam: weight_decay acts as L2
    num_epochs: int = 3
    max_steps: int = 100  # > 0 overrides num_epochs (epochs repeat until max_steps); reference: -1 (3 epochs)
    batch_size: int = 1  # G: gradient vectors per step; the pipeline batches, the loop takes what it gets
    eval_steps: int = 25  # reference: 250 (more than max_steps here)
    latent_dim: int = 1
    activation_encoder: str = "tanh"
    activation_decoder: str = "id"
    bias_decoder: bool = True
    normalize: bool = True
    convergence_threshold: float = 0.5
    convergence_mean_threshold: float = 0.5
    do_eval: bool = True
    eval_batch_size: int = 256  # eval rows encoded at once (memory bound only, no effect on results)
    device: str = "cpu"  # where the GRADIEND trains (devices.py); the returned model is always on CPU
    # the decoder's device: None = the encoder's; "auto" = the reference's split of a wide GRADIEND
    # (encoder on cuda:0, decoder on cuda:1) when there are 2 GPUs; or a device like "cuda:1"
    decoder_device: str | None = None

    def validate(self) -> "TrainConfig":
        _require(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _require(self.adam_epsilon > 0, f"adam_epsilon must be > 0, got {self.adam_epsilon}")
        _require(self.optim in ("adamw", "adam"), f"optim must be 'adamw' or 'adam', got {self.optim!r}")
        _require(_is_int(self.max_steps), f"max_steps must be an int, got {self.max_steps!r}")
        if self.max_steps <= 0:
            _require(_is_int(self.num_epochs) and self.num_epochs >= 1,
                     f"num_epochs must be an int >= 1 (or set max_steps > 0), got {self.num_epochs!r}")
        for name in ("batch_size", "eval_steps", "latent_dim", "eval_batch_size"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 1, f"{name} must be an int >= 1, got {value!r}")
        for name in ("convergence_threshold", "convergence_mean_threshold"):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value!r}")
        canonical_activation(self.activation_encoder)
        canonical_activation(self.activation_decoder or self.activation_encoder)
        if self.device is not None:
            parse_device(self.device, "train.device")
        if self.decoder_device is not None:
            parse_device(self.decoder_device, "train.decoder_device")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; valid: {sorted(known)}")
        return cls(**d).validate()


def _require(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{msg}; fix the training config")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class EvalSet:
    """Eval rows: sources (N,P) tensor, or a callable returning an iterable of (n,P) chunks; labels (N,)
    in {+1,-1} (0 allowed for identity rows); classes: optional class name per row (not used by training)."""

    sources: torch.Tensor | Callable[[], Iterable[torch.Tensor]]
    labels: torch.Tensor
    classes: list[str] | None = None

    def __len__(self) -> int:
        return int(torch.as_tensor(self.labels).numel())


@dataclass
class TrainResult:
    model: GradiendModel  # best (or final) checkpoint, eval mode, on CPU
    stats: dict  # JSON-able; layout in train_gradiend's docstring
    device: str = "cpu"  # where it trained: "cpu", "cuda:0 (name)", or "<encoder> + <decoder>" when split


# ---------------------------------------------------------------------- evaluation
@torch.no_grad()
def encode_rows(model: GradiendModel, sources, n_expected: int | None = None, chunk: int = 256) -> np.ndarray:
    """Encode every eval row; returns latent dim 0 as float64 (N,)."""
    was_training = model.training
    model.eval()
    parts = []
    for x in _source_chunks(sources, chunk):
        h = model.encode(x)  # (n, L)
        parts.append(h.reshape(h.shape[0], -1)[:, 0].double().cpu())
    model.train(was_training)
    enc = torch.cat(parts).numpy() if parts else np.zeros(0)
    if n_expected is not None and enc.size != n_expected:
        raise DataError(f"eval sources gave {enc.size} rows but there are {n_expected} labels; "
                        "pass one label per eval row")
    return enc


def _source_chunks(sources, chunk: int) -> Iterable[torch.Tensor]:
    if callable(sources):
        for x in sources():
            x = torch.as_tensor(x)
            yield x.unsqueeze(0) if x.dim() == 1 else x
        return
    x = torch.as_tensor(sources)  # (N, P)
    for i in range(0, x.shape[0], chunk):
        yield x[i:i + chunk]


def summarize(encoded: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, float]]:
    """(Pearson(label, encoding), {"1": mean, "-1": mean}) over all eval rows."""
    corr = pearson(labels, encoded)
    means = {k: float(encoded[labels == float(k)].mean()) for k in TARGET_KEYS}
    return corr, means


def _check_eval_labels(labels: np.ndarray) -> None:
    if not np.all(np.isin(labels, (1.0, -1.0, 0.0))):
        raise DataError("eval labels must be +1, -1 or 0; map the two target classes to +1/-1")
    missing = [k for k in TARGET_KEYS if not np.any(labels == float(k))]
    if missing:
        raise DataError(f"eval set has no rows with label {', '.join(missing)}; "
                        "in-training evaluation needs rows of both target classes")


# ---------------------------------------------------------------------- loop pieces
def _epoch_source(batches) -> Callable[[int], Iterable[Batch]]:
    if callable(batches):
        return batches
    if isinstance(batches, Iterable):
        return lambda epoch: batches
    raise ConfigError(f"batches must be a callable epoch -> iterable or a re-iterable, got {type(batches).__name__}")


def _make_optimizer(model: GradiendModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.optim == "adamw" else torch.optim.Adam
    # fused: one pass over the P-sized moment buffers per step instead of ~8 (21 -> 5 ms per step at
    # P = 2.3M on one CPU thread); the same update rule, rounding may differ from the reference's loop
    return cls(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, eps=cfg.adam_epsilon,
               fused=True)


def _as_pair(batch, input_dim: int, devices: tuple, dtype) -> Batch:
    try:
        source, target = batch
    except (TypeError, ValueError):
        raise DataError("each training batch must be a (source, target) pair of (G, P) tensors") from None
    out = []  # the source goes to the encoder's device, the target to the decoder's (where x_hat is)
    for name, t, device in (("source", source, devices[0]), ("target", target, devices[1])):
        t = torch.as_tensor(t)
        t = t.unsqueeze(0) if t.dim() == 1 else t
        if t.dim() != 2 or t.shape[1] != input_dim:
            raise DataError(f"training {name} has shape {tuple(t.shape)}, expected (G, {input_dim}); "
                            "build the gradients with the model's parameter map")
        out.append(t.to(device=device, dtype=dtype))
    if out[0].shape[0] != out[1].shape[0]:
        raise DataError(f"source has {out[0].shape[0]} rows but target has {out[1].shape[0]}; pair them row by row")
    return out[0], out[1]


def _train_step(model: GradiendModel, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                step: int, lr: float) -> float:
    x_hat, _ = model(x)  # (G, P)
    loss = F.mse_loss(x_hat, y)  # mean over G*P, as the reference's nn.MSELoss()
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"GRADIEND loss became {value} at step {step}; lower the learning rate (now {lr:g}) "
            "or check the training gradients for NaN/inf")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return value


@torch.no_grad()
def _flip_(model: GradiendModel, opt: torch.optim.Optimizer) -> None:
    """Mirror the model (encoding sign flips) and the Adam first moments with it."""
    model.invert_()
    for p in model.parameters():
        state = opt.state.get(p, {})
        if "exp_avg" in state:
            state["exp_avg"].neg_()


def _norms(model: GradiendModel) -> tuple[float, float]:
    with torch.no_grad():
        return float(model.encoder.weight.norm()), float(model.decoder.weight.norm())


def convergence(best: dict, cfg: TrainConfig, improved: bool) -> tuple[bool, dict]:
    """Single-run convergence (reference): improved past step 0, |corr| and both |class means|
    above their thresholds, class means of opposite sign."""
    m_pos, m_neg = best["mean_by_class"]["1"], best["mean_by_class"]["-1"]
    crit = {
        "improved_over_step0": bool(improved),
        "best_step": int(best["step"]),
        "abs_correlation": abs(best["correlation"]),
        "min_abs_mean": min(abs(m_pos), abs(m_neg)),
        "opposite_signs": bool(m_pos * m_neg < 0),
        "threshold": cfg.convergence_threshold,
        "mean_threshold": cfg.convergence_mean_threshold,
    }
    ok = (improved and best["step"] > 0 and crit["abs_correlation"] >= cfg.convergence_threshold
          and crit["min_abs_mean"] >= cfg.convergence_mean_threshold and crit["opposite_signs"])
    return bool(ok), crit


class _Recorder:
    """Per-eval summary history and the best checkpoint (state kept in memory on the train device)."""

    def __init__(self):
        self.eval_steps: list[int] = []
        self.correlation: list[float] = []
        self.means: dict[str, list[float]] = {k: [] for k in TARGET_KEYS}
        self.flips: list[int] = []
        self.bar = 0.0  # |corr| to beat; step 0 sets it
        self.best: dict | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def add(self, step: int, corr: float, means: dict, model: GradiendModel) -> None:
        self.eval_steps.append(step)
        self.correlation.append(corr)
        for k in TARGET_KEYS:
            self.means[k].append(means[k])
        if step > 0 and abs(corr) > self.bar:
            self.bar = abs(corr)
            self.best = {"step": step, "correlation": corr, "mean_by_class": dict(means)}
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif step == 0:
            self.bar = abs(corr)

    def last(self) -> dict:
        return {"step": self.eval_steps[-1], "correlation": self.correlation[-1],
                "mean_by_class": {k: self.means[k][-1] for k in TARGET_KEYS}}


def _tty_bar(total: int | None):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="GRADIEND", unit="step", file=sys.stderr, leave=False)


# ---------------------------------------------------------------------- one run's loop state
def _eval_labels(eval_set: EvalSet | None, cfg: TrainConfig) -> np.ndarray | None:
    """Checked eval labels (N,) as float64, or None when this run does not evaluate."""
    if not (cfg.do_eval and eval_set is not None and len(eval_set) > 0):
        return None
    labels = torch.as_tensor(eval_set.labels).double().reshape(-1).cpu().numpy()  # (N,)
    _check_eval_labels(labels)
    return labels


class _TrainRun:
    """One seed's training state: the GRADIEND (P -> L -> P) and its optimizer on cfg.device, the eval
    labels, the per-eval recorder, the per-step histories and the progress reporting."""

    def __init__(self, eval_set: EvalSet | None, input_dim: int, cfg: TrainConfig, seed: int,
                 progress: ProgressFn | None, say: Callable[[str], None]):
        self.cfg, self.input_dim, self.seed, self.say, self.progress = cfg, input_dim, seed, say, progress
        self.eval_set = eval_set
        self.labels = _eval_labels(eval_set, cfg)  # (N,) float64, None = no evaluation
        enc = resolve_device(cfg.device or "cpu", "train.device")
        self.devices = (enc, resolve_decoder_device(enc, cfg.decoder_device))  # (encoder, decoder)
        self.model = GradiendModel(input_dim, cfg.latent_dim, cfg.activation_encoder, cfg.activation_decoder,
                                   cfg.bias_decoder, seed=seed).place(*self.devices)
        self.model.train()
        self.opt = _make_optimizer(self.model, cfg)
        self.rec = _Recorder()
        self.losses: list[float] = []
        self.enc_norms: list[float] = []
        self.dec_norms: list[float] = []
        self.step = 0  # optimizer steps taken so far
        self.total = cfg.max_steps if cfg.max_steps > 0 else None  # for progress display only
        self.bar = _tty_bar(self.total) if progress is None else None

    def evaluate(self, step: int) -> dict:
        """Encode the eval rows, flip the sign when normalising (L == 1, corr < FLIP_BELOW), record."""
        cfg = self.cfg
        enc = encode_rows(self.model, self.eval_set.sources, self.labels.size, cfg.eval_batch_size)  # (N,)
        corr, means = summarize(enc, self.labels)
        if cfg.normalize and cfg.latent_dim == 1 and corr < FLIP_BELOW:
            _flip_(self.model, self.opt)
            corr, means = -corr, {k: -v for k, v in means.items()}
            self.rec.flips.append(step)
            self.say(f"step {step}: correlation {-corr:.3f} < {FLIP_BELOW}; flipped the GRADIEND sign")
        self.rec.add(step, corr, means, self.model)
        self.say(f"step {step}: eval correlation {corr:.4f}, mean +1 {means['1']:.3f}, mean -1 {means['-1']:.3f}")
        return {"correlation": corr, "mean_by_class": means}

    def report(self, step: int, info: dict) -> None:
        if self.progress is not None:
            self.progress(step, self.total, info)
        elif self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in info.items() if isinstance(v, float)})

    def train(self, epoch_fn: Callable[[int], Iterable[Batch]]) -> None:
        """Step-0 eval, then whole epochs until num_epochs or max_steps; the last step is always evaluated."""
        if self.labels is not None:
            self.report(0, self.evaluate(0))
        epochs = range(10**12) if self.cfg.max_steps > 0 else range(self.cfg.num_epochs)
        try:
            for epoch in epochs:
                self.run_epoch(epoch, epoch_fn(epoch))
                if self.step == self.cfg.max_steps:
                    break
            if self.labels is not None and self.rec.eval_steps[-1] != self.step:
                self.report(self.step, self.evaluate(self.step))  # last step not known in advance (unsized)
        finally:
            if self.bar is not None:
                self.bar.close()

    def run_epoch(self, epoch: int, it: Iterable[Batch]) -> None:
        """One pass over `it` (stops early at max_steps); DataError if it yields nothing."""
        cfg = self.cfg
        n_epoch = len(it) if hasattr(it, "__len__") else None
        if self.total is None and n_epoch is not None and cfg.max_steps <= 0:
            self.total = n_epoch * cfg.num_epochs  # progress display only
        final_epoch = cfg.max_steps <= 0 and epoch == cfg.num_epochs - 1
        seen = 0
        for batch in it:
            x, y = _as_pair(batch, self.input_dim, self.devices, self.model.dtype)  # (G, P), (G, P)
            seen += 1
            self.train_batch(x, y, epoch, final_epoch and seen == n_epoch)
            if self.step == cfg.max_steps:
                break
        if seen == 0:
            raise DataError(f"training epoch {epoch} yielded no batches; pass a callable epoch -> iterable "
                            "or a list (a one-shot iterator cannot be replayed) with at least one batch")

    def train_batch(self, x: torch.Tensor, y: torch.Tensor, epoch: int, ends_last_epoch: bool) -> None:
        """One optimizer step on source x (G, P) -> target y (G, P); evaluates on schedule and at the end."""
        self.step += 1
        step = self.step
        self.losses.append(_train_step(self.model, self.opt, x, y, step, self.cfg.learning_rate))
        e_norm, d_norm = _norms(self.model)
        self.enc_norms.append(e_norm)
        self.dec_norms.append(d_norm)
        info: dict = {"epoch": epoch, "loss": self.losses[-1]}
        is_last = step == self.cfg.max_steps or ends_last_epoch
        if self.labels is not None and (step % self.cfg.eval_steps == 0 or is_last):
            info.update(self.evaluate(step))
        self.report(step, info)

    def finish(self, t0: float) -> TrainResult:
        """Load the best checkpoint (if any), move the model to CPU in eval mode, build the stats."""
        if self.rec.best_state is not None:
            self.model.load_state_dict(self.rec.best_state)
        self.model.eval().place(torch.device("cpu"))
        stats = _stats(self.rec, self.cfg, self.labels is not None, self.step, self.losses, self.enc_norms,
                       self.dec_norms)
        stats.update(seconds=time.perf_counter() - t0, steps=self.step, seed=int(self.seed))
        if stats["converged"] is False:
            self.say(f"GRADIEND did not converge (best |correlation| {abs(stats['best']['correlation']):.3f}, "
                     f"threshold {self.cfg.convergence_threshold}); try more steps, a higher learning rate "
                     "or another seed")
        enc, dec = (describe(d) for d in self.devices)
        return TrainResult(model=self.model, stats=stats, device=enc if enc == dec else f"{enc} + {dec}")


# ---------------------------------------------------------------------- main entry
def train_gradiend(
    batches: Callable[[int], Iterable[Batch]] | Iterable[Batch],
    eval_set: EvalSet | None,
    input_dim: int,
    cfg: TrainConfig,
    seed: int,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train one GRADIEND (one seed).

    batches: epoch -> iterable of (source (G,P), target (G,P)), or a re-iterable used for every epoch.
    progress: called as progress(step, total_steps or None, info) after each step (and after step 0's
    eval); without it a tqdm bar is shown when stderr is a terminal.

    stats layout: {"eval_steps": [int], "correlation": [float], "mean_by_class": {"1": [float],
    "-1": [float]}, "loss": [float per step], "encoder_norm": [...], "decoder_norm": [...],
    "best": {"step", "correlation", "mean_by_class": {"1", "-1"}}, "converged": bool|None,
    "convergence": {criteria}, "normalized_flips": [steps], "seconds", "steps", "seed"}.
    Without evaluation, best = {"step": last step, "correlation": None, "mean_by_class": {.. None}}.
    """
    cfg.validate()
    t0 = time.perf_counter()
    say = log or logger.info
    epoch_fn = _epoch_source(batches)
    run = _TrainRun(eval_set, input_dim, cfg, seed, progress, say)
    run.train(epoch_fn)
    return run.finish(t0)


def _stats(rec: _Recorder, cfg: TrainConfig, evaluated: bool, step: int, losses, enc_norms, dec_norms) -> dict:
    if evaluated:
        improved = rec.best is not None
        best = rec.best if improved else rec.last()
        converged, crit = convergence(best, cfg, improved)
    else:
        best = {"step": step, "correlation": None, "mean_by_class": {k: None for k in TARGET_KEYS}}
        converged, crit = None, {"threshold": cfg.convergence_threshold,
                                 "mean_threshold": cfg.convergence_mean_threshold, "reason": "no evaluation"}
    return {
        "eval_steps": list(rec.eval_steps),
        "correlation": list(rec.correlation),
        "mean_by_class": {k: list(v) for k, v in rec.means.items()},
        "loss": list(losses),
        "encoder_norm": list(enc_norms),
        "decoder_norm": list(dec_norms),
        "best": best,
        "converged": converged,
        "convergence": crit,
        "normalized_flips": list(rec.flips),
    }
