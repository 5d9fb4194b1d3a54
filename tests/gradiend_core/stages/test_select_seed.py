"""select-seed: the winner is the reference's choice over every trained seed, copied with its stats."""
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
