import json
import os
from pathlib import Path

import pytest
import yaml

from gradiend_core.testing import tiny_experiment


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


@pytest.fixture
def tiny_config(tmp_path, tiny_model_dir) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(tiny_experiment(tiny_model_dir)))
    return p


@pytest.fixture
def run_json(capsys):
    """Run `gradiend-flow run CONFIG --store STORE --json [--set ...]` in-process; return the JSON summary."""
    from flows.cli import main

    def run(config, store, *sets) -> dict:
        argv = ["run", str(config), "--store", str(store), "--json"]
        for s in sets:
            argv += ["--set", s]
        code = main(argv)
        captured = capsys.readouterr()
        out = captured.out.strip().splitlines()
        assert code == 0, (out, captured.err.strip().splitlines()[-3:])
        return json.loads(out[-1])
    return run
