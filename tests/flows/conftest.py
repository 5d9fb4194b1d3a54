import os
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory):
    """One isolated Prefect home (ephemeral API database) for the whole test session."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny BERT masked LM whose vocabulary covers the built-in data sets, saved as a local dir."""
    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.testing import save_tiny, tiny_mlm

    model, tok = tiny_mlm(seed=0, hidden=32, layers=2, words=builtin_vocabulary())
    return save_tiny(model, tok, tmp_path_factory.mktemp("models") / "tiny-bert")


def tiny_experiment(model_dir: Path) -> dict:
    return {
        "name": "tiny-pronouns",
        "model": {"name_or_path": str(model_dir), "fit_head": "never"},
        "data": {"builtin": "pronoun_number", "max_per_class": 30, "neutral_max": 12},
        "extract": {"batch_size": 8, "micro_batch_size": 4, "max_neutral_rows": 6},
        "pre_prune": {"n_samples": 4, "topk": 0.25},
        "train": {"max_steps": 12, "eval_steps": 4, "max_seeds": 2, "learning_rate": 1e-3},
        "decoder_grid": {"learning_rates": [1.0, 0.1], "max_rows_per_class": 4, "lms_max_texts": 8},
    }


@pytest.fixture
def tiny_config(tmp_path, tiny_model_dir) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(tiny_experiment(tiny_model_dir)))
    return p
