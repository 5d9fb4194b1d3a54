"""select-seed: the winner is the reference's choice over every trained seed, copied with its stats."""
from pathlib import Path

from gradiend_core.io import read_json
from gradiend_core.seeds import SeedSelectionConfig, select_seed


def test_winner_is_the_selection_over_every_seed(tiny_run):
    out = tiny_run.out("select-seed")
    report = read_json(out / "seed_report.json")
    runs = [{"seed": s, "stats": read_json(tiny_run.out(f"train-seed-{s}") / "stats.json")} for s in (0, 1)]
    want = select_seed(runs, SeedSelectionConfig(**tiny_run.done["select-seed"]["config"]["select"]))
    assert report["best_seed"] == want["best_seed"] and [r["seed"] for r in report["runs"]] == [0, 1]
    winner = tiny_run.out(f"train-seed-{report['best_seed']}")
    assert (out / "model" / "model.safetensors").read_bytes() == (winner / "model" / "model.safetensors").read_bytes()
    assert (out / "stats.json").read_bytes() == (winner / "stats.json").read_bytes()
    assert (tiny_run.report("select-seed") / "training_convergence.png").is_file()


def test_seeds_are_evaluated_on_validation_and_the_report_says_so(tiny_run):
    report = read_json(tiny_run.out("select-seed") / "seed_report.json")
    assert report["eval_split"] == "validation" and "warning" not in report
    assert "warning" not in tiny_run.done["select-seed"]["info"]


def test_a_choice_among_unevaluated_seeds_is_reported_as_blind(tiny_run):
    """train.do_eval false: no seed has a score, the first is taken; the report and manifest say so."""
    from gradiend_core.config_loader import from_dict, to_dict
    from gradiend_core.experiment import ExperimentConfig
    from gradiend_core.stages.plan import plan, run_plan

    exp = to_dict(tiny_run.cfg)
    exp["train"]["do_eval"] = False
    done = run_plan(tiny_run.store, plan(from_dict(ExperimentConfig, exp, "")), until="select-seed")
    report = read_json(Path(done["select-seed"]["path"]) / "seed_report.json")
    assert report["eval_split"] is None and report["best_seed"] == 0
    assert report["warning"].startswith("no seed was evaluated during training") and "not chosen on merit" in \
        done["select-seed"]["info"]["warning"]
