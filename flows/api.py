"""Python API for notebooks: the same flow as the CLI, returning the results.

    from flows.api import run_experiment
    result = run_experiment("examples/pronoun_number.yaml", store="store", overrides=["train.max_steps=50"])
    result.metrics["encoder_correlation"]; result.output("decoder-grid"); result.load_model()
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradiend_core.cas import ArtifactStore
from gradiend_core.config_loader import to_dict
from gradiend_core.experiment import ExperimentConfig, load_experiment

from . import env


def resolve_config(config: Any = None, overrides: list[str] | None = None) -> ExperimentConfig:
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
    """Everything checked before any stage runs: config slices (model path, data classes), the store."""
    from gradiend_core.stages.plan import plan

    s = ArtifactStore(Path(store))
    s.check_writable()
    return plan(cfg)


@dataclass
class RunResult:
    summary: dict
    store: Path

    @property
    def metrics(self) -> dict:
        return self.summary["metrics"]

    def output(self, stage_id: str) -> Path:
        """Directory of a stage's output (e.g. 'decoder-grid', 'train-seed-0')."""
        st = self.summary["stages"][stage_id]
        return ArtifactStore(self.store).path(stage_id.rsplit("-", 1)[0] if stage_id.startswith("train-seed-")
                                              else stage_id, st["key"])

    def load_model(self):
        """The rewritten transformers model and its tokenizer."""
        from transformers import AutoTokenizer

        from gradiend_core.lm import load_base_model

        base = load_base_model(self.summary["rewritten_model"])
        return base.model, AutoTokenizer.from_pretrained(self.summary["rewritten_model"])


def run_experiment(config: Any = None, store: str | Path = "store", overrides: list[str] | None = None) -> RunResult:
    """Run the flow (locally, no server needed) and return its summary."""
    env.apply()
    cfg = resolve_config(config, overrides)
    preflight(cfg, store)
    from .pipeline import gradiend_flow, task_runner

    f = gradiend_flow.with_options(task_runner=task_runner(cfg))
    summary = f(experiment=to_dict(cfg), store=str(Path(store).resolve()))
    return RunResult(summary, Path(store).resolve())
