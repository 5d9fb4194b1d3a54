"""decoder-grid cells in parts (runner.grid_parts): the part tasks run, and the published files and
keys are exactly those of the one-task grid, on a local store and on a URL store.

The part runs start from a copy of the one-task run's store without its grid, so only the grid is
scored again (every upstream output is reused, which keeps the test short)."""
import shutil

from gradiend_core.store import open_store


def ran(summary) -> set[str]:
    return {sid for sid, st in summary["stages"].items() if not st["cached"]}


def keys(summary) -> dict:
    return {sid: st["key"] for sid, st in summary["stages"].items()}


def grid_files(location, summary: dict) -> dict:
    m = open_store(location).manifest("decoder-grid", summary["stages"]["decoder-grid"]["key"])
    return {rel: f["sha256"] for rel, f in m["files"].items()}


def copy_without_grid(src, dst, key: str) -> None:
    """The store as it was before the grid ran (Prefect's cache records point into `src`: not copied)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".prefect-results", ".locks"))
    shutil.rmtree(dst / "decoder-grid" / key)


def test_grid_parts_publish_the_one_task_files(run_json, prefect_home, tiny_config, tmp_path, monkeypatch):
    one = run_json(tiny_config, tmp_path / "one")
    key = one["stages"]["decoder-grid"]["key"]
    reference = grid_files(tmp_path / "one", one)
    # the plots are its report's; the per-item scores behind the intervals are the grid's
    assert set(reference) == {"grid.parquet", "grid.json", "lms_positions.parquet", "row_probs.parquet"}
    report = one["stages"]["decoder-grid"]["report"]["key"]
    assert list((tmp_path / "one" / "decoder-grid-report" / report).glob("probability_shifts_*.png"))
    assert "parts" not in one["stages"]["decoder-grid"]
    n_cells = open_store(tmp_path / "one").manifest("decoder-grid", key)["info"]["n_cells"] - 1  # base excluded

    copy_without_grid(tmp_path / "one", tmp_path / "three", key)
    three = run_json(tiny_config, tmp_path / "three", "runner.grid_parts=3")
    assert ran(three) == {"decoder-grid"} and keys(three) == keys(one)
    parts = three["stages"]["decoder-grid"]["parts"]  # the summary shows the part tasks that ran
    assert [p["part"] for p in parts] == [0, 1, 2] and all(p["cells"] > 0 for p in parts)
    assert sum(p["cells"] for p in parts) == n_cells
    assert grid_files(tmp_path / "three", three) == reference
    assert open_store(tmp_path / "three").leftovers() == []

    # URL store: finalize publishes through the remote store (upload, manifest last)
    shared = tmp_path / "shared"
    copy_without_grid(tmp_path / "one", shared, key)
    monkeypatch.setenv("GRADIEND_FLOW_CACHE", str(tmp_path / "cache"))
    remote = run_json(tiny_config, shared.as_uri(), "runner.grid_parts=2")
    assert ran(remote) == {"decoder-grid"} and len(remote["stages"]["decoder-grid"]["parts"]) == 2
    assert grid_files(shared.as_uri(), remote) == reference
    again = run_json(tiny_config, shared.as_uri(), "runner.grid_parts=2")
    assert ran(again) == set() and "parts" not in again["stages"]["decoder-grid"]
