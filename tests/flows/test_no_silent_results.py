"""Results that must not be taken at face value say so (issue 19), in the run summary, the log and the
manifests: data without validation rows is evaluated on test (the reference's fallback) and the seed report
says so; a rewrite that scores exactly as the base model is flagged."""
import json

import yaml

from flows.cli import main
from gradiend_core.io import read_json
from gradiend_core.testing import tiny_experiment


def test_fallback_evaluation_and_a_no_op_rewrite_are_reported(tiny_model_dir, tmp_path, prefect_home, capsys):
    exp = tiny_experiment(tiny_model_dir)
    exp["data"].update(train_ratio=0.9, validation_ratio=0.0, test_ratio=0.1)  # no validation rows
    exp["decoder_grid"]["learning_rates"] = [1e-30]  # a step below float32's resolution near the weights
    config, store = tmp_path / "tiny.yaml", tmp_path / "store"
    config.write_text(yaml.safe_dump(exp))
    assert main(["run", str(config), "--store", str(store), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])

    # every seed was evaluated during training, on the test split, and the seed report says it is not held out
    for seed in (0, 1):
        stats = read_json(store / "train-seed" / summary["stages"][f"train-seed-{seed}"]["key"] / "stats.json")
        assert stats["converged"] is not None and len(stats["eval_steps"]) >= 2
    report = read_json(store / "select-seed" / summary["stages"]["select-seed"]["key"] / "seed_report.json")
    assert report["eval_split"] == "test" and all(r["best_correlation"] is not None for r in report["runs"])
    assert "evaluated on the test split (there are no validation rows" in report["warning"]

    # the rewrite changes weights below any visible effect: flagged in its manifest and in the summary
    rewrite = read_json(store / "rewrite" / summary["stages"]["rewrite-3SG-strengthen"]["key"] / "manifest.json")
    assert "is in effect the base model" in rewrite["info"]["warning"]
    assert [w.split(":")[0] for w in summary["warnings"]] == ["select-seed", "rewrite-3SG-strengthen"]
    shown = [line for line in out if line.startswith("WARNING ")]
    assert len(shown) == 2 and "scores exactly as the base model" in shown[1], out
