"""train-seed: one checkpoint and stats per seed, each seed keyed without max_seeds, the plot in the report."""
import torch

from gradiend_core.checkpoint import load_gradiend
from gradiend_core.io import read_json
from gradiend_core.stages.plan import plan


def test_every_seed_has_a_checkpoint_and_its_stats(tiny_run):
    for seed in (0, 1):
        out = tiny_run.out(f"train-seed-{seed}")
        stats = read_json(out / "stats.json")
        assert stats["seed"] == seed and stats["steps"] == 12 and stats["eval_steps"] == [0, 4, 8, 12]
        g = load_gradiend(out / "model")
        assert g.model.input_dim == tiny_run.done["pre-prune"]["info"]["dim"]
        assert g.directions == {"3SG": 1, "3PL": -1}
        assert not list(out.glob("*.png"))  # plots are the report's
        assert (tiny_run.report(f"train-seed-{seed}") / "training_convergence.png").is_file()
    a = load_gradiend(tiny_run.out("train-seed-0") / "model").model.encoder.weight
    b = load_gradiend(tiny_run.out("train-seed-1") / "model").model.encoder.weight
    assert not torch.equal(a, b)  # seeds change the initialisation


def test_seed_keys_do_not_depend_on_max_seeds(tiny_run):
    import dataclasses

    more = dataclasses.replace(tiny_run.cfg, train=dataclasses.replace(tiny_run.cfg.train, max_seeds=4))
    steps = plan(more)
    assert [s for s in steps if s.startswith("train-seed-")] == [f"train-seed-{i}" for i in range(4)]
    for seed in (0, 1):
        assert steps[f"train-seed-{seed}"].key == tiny_run.steps[f"train-seed-{seed}"].key
    assert steps["select-seed"].key != tiny_run.steps["select-seed"].key  # it sees four candidates
