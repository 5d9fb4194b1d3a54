"""End to end on a tiny model: the CLI's --json summaries prove what re-runs and what is reused."""
import json
from pathlib import Path

import pytest

from flows.cli import main

UPSTREAM = ["prepare-model", "create-data", "extract-gradients"]
REWRITE = "rewrite-3SG-strengthen"  # the default request: strengthen the first class



def ran(summary) -> set[str]:
    return {sid for sid, st in summary["stages"].items() if not st["cached"]}


def test_cold_warm_and_partial_reruns(capsys, run_json, prefect_home, tiny_config, tmp_path):
    store = tmp_path / "store"
    cold = run_json(tiny_config, store)
    assert ran(cold) == set(cold["stages"])  # everything computed
    assert {"train-seed-0", "train-seed-1", "select-seed", REWRITE} <= set(cold["stages"])
    assert -1.0 <= cold["metrics"]["encoder_correlation"] <= 1.0

    warm = run_json(tiny_config, store)
    assert ran(warm) == set()
    assert {k: v["key"] for k, v in warm["stages"].items()} == {k: v["key"] for k, v in cold["stages"].items()}

    lr = run_json(tiny_config, store, "train.learning_rate=5e-4")
    assert ran(lr) == {"train-seed-0", "train-seed-1", "select-seed", "evaluate-encoder", "decoder-grid", REWRITE}

    grid = run_json(tiny_config, store, "decoder_grid.learning_rates=[2.0, 0.5]")
    assert ran(grid) == {"decoder-grid", REWRITE}

    src = run_json(tiny_config, store, "train.source=factual")
    assert not (ran(src) & set(UPSTREAM))
    assert "train-seed-0" in ran(src)

    # the rewritten model is a plain transformers model directory with its tokenizer
    from transformers import pipeline

    fill = pipeline("fill-mask", model=cold["rewritten_model"])
    assert len(fill("the doctor said [MASK] was late .")) > 0
    from flows.api import RunResult
    from gradiend_core.store import LocalStore

    rewrite = LocalStore(store).manifest("rewrite", cold["stages"][REWRITE]["key"])["info"]
    assert (rewrite["objective"], rewrite["pipeline_task"]) == ("mlm", "fill-mask")
    model, _ = RunResult(cold, str(store)).load_model()  # loaded with the objective the rewrite recorded
    assert type(model).__name__ == "BertForMaskedLM"

    # show: one output's manifest by key prefix
    key = cold["stages"]["decoder-grid"]["key"]
    assert main(["show", key[:8], "--store", str(store)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["stage"], shown["key"]) == ("decoder-grid", key) and "grid.parquet" in shown["files"]
    # gc: drop the variants' outputs, keep everything the base experiment uses
    variant = store / "train-seed" / lr["stages"]["train-seed-0"]["key"]
    assert variant.exists()
    assert main(["gc", str(tiny_config), "--store", str(store), "--dry-run"]) == 0
    assert "would remove" in capsys.readouterr().out and variant.exists()
    assert main(["gc", str(tiny_config), "--store", str(store)]) == 0
    capsys.readouterr()
    assert not variant.exists()
    assert main(["status", str(tiny_config), "--store", str(store)]) == 0
    status = capsys.readouterr().out.strip().splitlines()
    assert len(status) == len(cold["stages"]) and all(line.split()[-1] == "cached" for line in status)
    assert ran(run_json(tiny_config, store)) == set()


def test_corrupted_output_is_recomputed(run_json, prefect_home, tiny_config, tmp_path):
    store = tmp_path / "store"
    cold = run_json(tiny_config, store)
    key = cold["stages"]["create-data"]["key"]
    target = store / "create-data" / key / "training.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    target.write_bytes(bytes(data))
    again = run_json(tiny_config, store)
    assert ran(again) == {"create-data"}  # downstream keys are recipe hashes: still valid
    (store / "pre-prune" / cold["stages"]["pre-prune"]["key"] / "keep.safetensors").unlink()
    assert ran(run_json(tiny_config, store)) == {"pre-prune"}


@pytest.mark.parametrize("sets, needle", [
    (["train.learnng_rate=1e-3"], "did you mean 'learning_rate'"),
    (["train.max_steps=many"], "train.max_steps: expected int"),
    (["data.train_ratio=0.95"], "sum to"),
    (["model.name_or_path=/nonexistent/model"], "not found"),
])
def test_bad_input_fails_before_any_stage(capsys, tiny_config, tmp_path, sets, needle):
    store = tmp_path / "store"
    argv = ["run", str(tiny_config), "--store", str(store)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not any(p for p in store.glob("*/*") if not p.name.startswith("."))  # no stage output written


def test_more_seeds_train_only_the_new_ones(run_json, prefect_home, tiny_config, tmp_path):
    store = tmp_path / "store"
    one = run_json(tiny_config, store, "train.max_seeds=1")
    assert [s for s in one["stages"] if s.startswith("train-seed")] == ["train-seed-0"]
    two = run_json(tiny_config, store, "train.max_seeds=2")
    trained = {s for s in ran(two) if s.startswith("train-seed")}
    assert trained == {"train-seed-1"} and two["stages"]["train-seed-0"]["key"] == one["stages"]["train-seed-0"]["key"]
    assert not (ran(two) & {"prepare-model", "create-data", "extract-gradients", "pre-prune"})
    assert ran(run_json(tiny_config, store, "train.max_seeds=1")) == set()  # lowering it reuses


def test_a_plot_change_redraws_without_rerunning_any_stage(run_json, prefect_home, tiny_config, tmp_path,
                                                           monkeypatch):
    store = tmp_path / "store"
    cold = run_json(tiny_config, store)
    drawn = {sid for sid, st in cold["stages"].items() if "report" in st}
    assert {"train-seed-0", "select-seed", "evaluate-encoder", "decoder-grid"} <= drawn
    assert all(not cold["stages"][s]["report"]["cached"] for s in drawn)
    # a change of the plotting code: every report's code version (part of its key) changes
    from gradiend_core.stages import declaration

    real = declaration.code_digest
    monkeypatch.setattr(declaration, "code_digest", lambda modules: "edited-" + real(modules))
    again = run_json(tiny_config, store)
    assert ran(again) == set()  # no stage re-ran ...
    assert {sid for sid, st in again["stages"].items() if "report" in st and not st["report"]["cached"]} == drawn
    for sid in drawn:  # ... and every plot was drawn again, into a new report output
        new, old = again["stages"][sid]["report"]["key"], cold["stages"][sid]["report"]["key"]
        stage = again["stages"][sid]["stage"]
        assert new != old and list((store / f"{stage}-report" / new).glob("*.png"))
