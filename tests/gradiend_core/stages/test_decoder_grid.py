"""decoder-grid: one row per (feature factor, learning rate) cell plus the base, and the selected cells."""
import pandas as pd

from gradiend_core.io import read_json


def test_every_cell_is_scored_and_the_selection_keeps_the_lms(tiny_run):
    out = tiny_run.out("decoder-grid")
    table = pd.read_parquet(out / "grid.parquet")
    grid = read_json(out / "grid.json")
    ffs = sorted(grid["feature_factors"].values())
    assert len(table) == 1 + len(ffs) * 2 and table["is_base"].sum() == 1
    assert set(zip(table[~table["is_base"]]["feature_factor"], table[~table["is_base"]]["learning_rate"])) == {
        (ff, lr) for ff in ffs for lr in (0.1, 1.0)}
    for name, s in grid["summary"].items():
        assert s["id"] == "base" or s["lms"] >= 0.99 * grid["base_lms"], name
    plots = sorted(p.name for p in tiny_run.report("decoder-grid").glob("*.png"))
    assert plots == sorted(f"probability_shifts_{c}.png" for c in grid["feature_factors"])
    assert not list(out.glob("*.png"))
