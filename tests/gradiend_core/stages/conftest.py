"""One run of the whole plan (post-pruning on, reports drawn) on a tiny model, shared by the stage tests:
each stage's test checks its own output of that run."""
from dataclasses import dataclass
from pathlib import Path

import pytest

from gradiend_core.store import LocalStore
from gradiend_core.experiment import ExperimentConfig, load_experiment
from gradiend_core.stages.plan import StagePlan, plan, run_plan
from gradiend_core.testing import save_tiny, tiny_experiment, tiny_mlm


REQUESTS = [{"class": "3SG", "direction": "strengthen"}, {"class": "3PL", "direction": "weaken"}]


@dataclass
class TinyRun:
    cfg: ExperimentConfig
    steps: dict[str, StagePlan]
    store: LocalStore
    done: dict[str, dict]      # plan id -> manifest

    def out(self, sid: str) -> Path:
        return Path(self.done[sid]["path"])

    def report(self, sid: str) -> Path:
        p = self.steps[sid]
        return self.store.path(p.decl.report_stage, p.report_key)


@pytest.fixture(scope="session")
def stage_model_dir(tmp_path_factory) -> Path:
    from gradiend_core.data.builtin import builtin_vocabulary

    d = tmp_path_factory.mktemp("stage-model")
    return save_tiny(*tiny_mlm(seed=0, hidden=32, layers=2, words=builtin_vocabulary()), d / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, stage_model_dir) -> TinyRun:
    import yaml

    d = tmp_path_factory.mktemp("stage-run")
    exp = tiny_experiment(stage_model_dir)
    exp["post_prune"] = {"enabled": True, "topk": 0.5}
    exp["rewrite"] = {"targets": REQUESTS}
    (d / "tiny.yaml").write_text(yaml.safe_dump(exp))
    cfg = load_experiment(d / "tiny.yaml")
    steps, store = plan(cfg), LocalStore(d / "store")
    return TinyRun(cfg, steps, store, run_plan(store, steps, reports=True))
