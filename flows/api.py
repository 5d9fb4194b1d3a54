"""Python API for notebooks: the same flow as the CLI, returning the results.

    from flows.api import run_experiment
    result = run_experiment("examples/pronoun_number.yaml", store="store", overrides=["train.max_steps=50"])
    result.metrics["encoder_correlation"]; result.output("decoder-grid"); result.load_model()
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradiend_core.store import Store, open_store

from . import env, user_errors

if TYPE_CHECKING:  # the config pulls in torch (its sections are the method's configs): imported when needed,
    from gradiend_core.experiment import ExperimentConfig  # after Prefect's temporary API started


def resolve_config(config: Any = None, overrides: list[str] | None = None) -> ExperimentConfig:
    from gradiend_core.experiment import ExperimentConfig, load_experiment

    if isinstance(config, ExperimentConfig):
        if overrides:
            raise ValueError("pass overrides with a config file or dict, not with an ExperimentConfig object")
        return config
    if isinstance(config, dict):
        import tempfile

        import yaml

        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(config, f)
        return load_experiment(f.name, overrides)
    return load_experiment(config, overrides)


def preflight(cfg: ExperimentConfig, store: str | Path):
    """Everything checked before any stage runs: the devices, config slices (model path, data classes), the store,
    and, unless extraction is already cached, the model, the data and the disk space extraction needs (a suite:
    of every pair)."""
    from gradiend_core.devices import check_config
    from gradiend_core.stages.plan import pair_plan, plan
    from gradiend_core.suite import pair_configs

    from .preflight_data import check_data

    check_config(cfg)  # the devices are on this host and model.dtype runs there
    steps = plan(cfg)  # the config slices: a missing model or data file fails here, before the store is opened
    s = open_store(store)
    _check_writable(s, steps)
    singles = [(cfg, steps)] if cfg.suite is None else [(c, pair_plan(c)) for c in pair_configs(cfg).values()]
    base: dict = {}  # the base model, loaded once for every pair of a suite
    grid = cfg.suite is None or cfg.suite.rewrite  # the decoder grid and the rewrites run
    need = []  # (rows, dims, dtype) each extraction still to run stores: a suite's pairs extract together
    for one, one_steps in singles:
        if grid:
            _check_target_class(one)
        extracted = s.status("extract-gradients", one_steps["extract-gradients"].key) == "cached"
        model = None if extracted else _check_model(one, base)
        # the data, from create-data's manifest when cached: what evaluation and training need of it is
        # checked even when extraction is cached (a later section's change must not fail after training)
        n_rows = check_data(one, s, one_steps, grid)
        if not extracted:
            need.append(_check_extraction(one, s, one_steps, model, n_rows))
    if need:  # row-dims summed over the stores (same dtype: a suite's pairs differ in no extract setting)
        from gradiend_core import extraction

        extraction.check_disk(s.root, 1, sum(r * d for r, d, _ in need), need[0][2], stores=len(need))
    return steps


def _check_writable(s: Store, steps) -> None:
    """The store can take new outputs (it is made a store if new), or, read-only, holds every stage
    output of the plan already: then the run only reads them (plots not drawn yet are skipped)."""
    from gradiend_core.errors import StoreError
    from gradiend_core.store.marker import LEGACY, STORE

    try:
        s.check_writable()
    except StoreError as e:
        if s.state() not in (STORE, LEGACY):
            raise
        todo = [sid for sid, p in steps.items() if s.status(p.stage, p.key) != "cached"]
        if todo:
            raise StoreError(f"{e}; {len(todo)} of {len(steps)} stage outputs are not in it yet (first: "
                             f"{todo[0]}), a read-only store can only show what is cached") from None


def _check_target_class(cfg: ExperimentConfig) -> None:
    """The rewrite requests are read by the last stage only: check their classes against the GRADIEND's
    pair up front (only the pair's classes have a feature factor to rewrite towards)."""
    cfg.rewrite.requests(list(cfg.pair()))  # ConfigError naming the unknown class


def _check_model(cfg: ExperimentConfig, base: dict):
    """A cheap dry run of what prepare-model would fail on (the model loads, every target word encodes),
    so a bad model is reported before minutes of work and with the store unchanged. `base`: the base
    models loaded so far, by model section (a suite's pairs share one). Returns the loaded model."""
    from gradiend_core.lm import load_base_model
    from gradiend_core.data.corpus import class_map

    m = cfg.model
    which = (m.name_or_path, m.fit_head, m.objective)
    if which not in base:
        base[which] = load_base_model(m.name_or_path, allow_missing_head=m.fit_head != "never", objective=m.objective)
    model = base[which]
    classes = class_map(cfg.data)
    for word in sorted({w for ws in classes.values() for w in ws}):
        model.objective.target_token_ids(model.tokenizer, word)
    return model


def _check_extraction(cfg: ExperimentConfig, store: Store, steps, base, n_rows: int) -> tuple[int, int, str]:
    """What extract-gradients would fail on (the parameter patterns select something); returns what it
    stores: (rows still to extract of the `n_rows` data rows plus the neutral and masked rows, dims,
    storage dtype), for the disk check."""
    from gradiend_core.param_map import select_parameters
    from gradiend_core import extraction

    x = cfg.extract
    n_rows += (x.max_neutral_rows or cfg.data.neutral_max or 0) + (x.max_training_masked_rows or 0)
    body = base.objective.backbone(base.model)
    dim = select_parameters(base.model, x.include, x.exclude, backbone=body).input_dim
    if cfg.pre_prune.enabled:  # only the kept dims are stored
        from gradiend_core.pruning import resolve_k

        dim = resolve_k(cfg.pre_prune.topk, dim)
    x_step = steps["extract-gradients"]  # a failed or killed extraction's finished rows are kept: only the rest
    kept = extraction.rows_kept(store.root / x_step.stage, x_step.key, x.batch_size)
    return max(n_rows - kept, 0), dim, x.dtype


@dataclass
class RunResult:
    summary: dict
    store: str  # the directory, or the URL of a shared store

    @property
    def metrics(self) -> dict:
        return self.summary["metrics"]

    def output(self, stage_id: str) -> Path:
        """Local directory of a stage's output (e.g. 'decoder-grid', 'train-seed-0', 'rewrite-3SG-strengthen'),
        its files on this host (an output of a URL store is downloaded to this host's cache first)."""
        st = self.summary["stages"][stage_id]
        return open_store(self.store).fetch(st.get("stage") or _stage_of(stage_id), st["key"])

    def rewrites(self) -> list[str]:
        """Plan ids of the rewritten models, in request order (e.g. ['rewrite-3SG-strengthen'])."""
        return [r["id"] for r in self.summary.get("rewrites", [])]

    def load_model(self, rewrite: str | None = None):
        """A rewritten transformers model and its tokenizer: `rewrite` is its plan id (default: the first
        request's; `rewrites()` lists them)."""
        from transformers import AutoTokenizer

        from gradiend_core.lm import load_base_model

        sid = rewrite or self.rewrites()[0]
        model_dir = self.output(sid) / "model"
        manifest = open_store(self.store).manifest("rewrite", self.summary["stages"][sid]["key"]) or {}
        objective = manifest.get("info", {}).get("objective", "auto")  # older outputs did not record it
        return load_base_model(model_dir, objective=objective).model, AutoTokenizer.from_pretrained(model_dir)


def _stage_of(stage_id: str) -> str:
    """The stage of a plan id, for summaries that do not record it."""
    from gradiend_core.stages.registry import BY_NAME

    return next((n for n in sorted(BY_NAME, key=len, reverse=True) if stage_id == n or stage_id.startswith(n + "-")),
                stage_id)


def run_experiment(config: Any = None, store: str | Path = "store", overrides: list[str] | None = None,
                   cache: str | Path | None = None) -> RunResult:
    """Run the flow (locally, no server needed) and return its summary.

    `store`: a directory, or an fsspec URL (file:///shared/store, s3://bucket/prefix, memory://name)
    that several hosts share. `cache`: where this host keeps its copies of a URL store's outputs
    (default $GRADIEND_FLOW_CACHE, else ~/.cache/gradiend-flow); it is passed on to the workers this
    run starts (local Dask or Ray), while remote workers use their own host's setting.
    """
    env.apply()
    from . import local_api

    api = local_api.start()  # first: it comes up on the other core while the checks below run
    cfg = resolve_config(config, overrides)
    from .runner_address import check_address

    check_address(cfg.runner.kind, cfg.runner.address)  # a scheduler that does not answer: before the store is opened
    with _cache_env(cache):
        location = open_store(store).location  # an unknown URL protocol fails here, before any stage
        preflight(cfg, location)
        from gradiend_core.config_loader import to_dict

        from .pipeline import gradiend_flow, task_runner

        f = gradiend_flow.with_options(task_runner=task_runner(cfg))
        user_errors.install()  # a failed stage's one-line error is not buried under Prefect's tracebacks
        if api is None:  # a configured API (PREFECT_API_URL)
            summary = f(experiment=to_dict(cfg), store=location)
        else:
            _import_while(lambda: not api.ready(), WARM_IMPORTS)
            with local_api.ready(api).settings():
                summary = f(experiment=to_dict(cfg), store=location)
    return RunResult(summary, location)


# Imported while Prefect's temporary API is still starting (the main thread would only wait): the
# model-building half of transformers (~1.9 s here, needed by every stage that loads a model) and
# matplotlib (the stages' plots). Imports are GIL-bound, so this only fills otherwise idle time.
WARM_IMPORTS = ("transformers.modeling_utils", "matplotlib.figure", "matplotlib.backends.backend_agg")


def _import_while(busy, modules) -> None:
    """Import `modules` one by one while busy() is true (each import, once started, completes)."""
    import importlib

    for name in modules:
        if not busy():
            return
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


@contextlib.contextmanager
def _cache_env(cache: str | Path | None):
    """Set GRADIEND_FLOW_CACHE for one run: tasks on threads read it, and workers started during the
    run inherit it. Restored afterwards, so a notebook's later runs are unaffected."""
    from gradiend_core.store import ENV_CACHE

    old = os.environ.get(ENV_CACHE)
    if cache is not None:
        os.environ[ENV_CACHE] = str(Path(cache).expanduser().resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_CACHE, None)
        else:
            os.environ[ENV_CACHE] = old
