"""Task runners: the tiny experiment on a 2-worker Dask cluster, on a local 2-CPU Ray instance and on
threads computes the same stages (same content keys) and the same metrics; extraction split into row
shards and the decoder grid split into parts write the same bytes on Dask and Ray. Separate stores,
so every run really computes everything."""
import logging
import math

import pytest
import yaml


pytest.importorskip("prefect_dask", reason="Dask runner not installed: pip install 'prefect-dask==0.3.7'")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]



def same_metrics(a, b, rel=1e-5) -> bool:
    """Equal structure and values. Floats get a tiny tolerance: a Dask worker runs torch on one thread,
    so float reductions may round differently (observed: a few fp16 gradient entries differ by 1 ulp)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_metrics(a[k], b[k], rel) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)
    return a == b


@pytest.fixture(scope="module")
def threads_run(prefect_home, tiny_model_dir, tmp_path_factory):
    """(config, store, summary) of the reference run on threads, shared by the runner tests."""
    from flows.api import run_experiment
    from gradiend_core.testing import tiny_experiment

    d = tmp_path_factory.mktemp("runners")
    config = d / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment(tiny_model_dir)))
    result = run_experiment(config, d / "threads", ["runner.kind=threads", "runner.max_workers=2"])
    return config, d / "threads", result.summary


def agree(run: dict, threads: dict) -> None:
    for s in (run, threads):
        assert not any(st["cached"] for st in s["stages"].values())  # both computed from scratch
    assert {k: v["key"] for k, v in run["stages"].items()} == {k: v["key"] for k, v in threads["stages"].items()}
    assert same_metrics(run["metrics"], threads["metrics"]), (run["metrics"], threads["metrics"])


def digests(store, summary: dict, stage: str) -> dict:
    from gradiend_core.store import open_store

    m = open_store(store).manifest(stage, summary["stages"][stage]["key"])
    return {rel: f["sha256"] for rel, f in m["files"].items()}


def same_files(store, run: dict, threads_store, threads: dict) -> None:
    """Row shards and grid parts written by other processes: the same bytes as one task on a thread."""
    for stage in ("extract-gradients", "decoder-grid"):
        assert digests(store, run, stage) == digests(threads_store, threads, stage), stage


def test_dask_and_threads_agree(run_json, threads_run, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    config, threads_store, threads = threads_run
    logging.getLogger("distributed").setLevel(logging.WARNING)  # very chatty at INFO
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client, get_task_stream(client) as stream:
        dask = run_json(config, tmp_path / "dask", "runner.kind=dask", f"runner.address={cluster.scheduler_address}",
                        "runner.extract_shards=2", "runner.grid_parts=2")
    # every stage ran as a Dask task (extraction and the grid each as prepare, 2 parts, finalize),
    # spread over both worker processes (the shards, the seeds and the grid parts run side by side)
    assert len(stream.data) >= len(dask["stages"]) + 6
    assert len({t["worker"] for t in stream.data}) == 2
    assert [s["shard"] for s in dask["stages"]["extract-gradients"]["shards"]] == [0, 1]
    assert [p["part"] for p in dask["stages"]["decoder-grid"]["parts"]] == [0, 1]
    agree(dask, threads)
    same_files(tmp_path / "dask", dask, threads_store, threads)


def test_ray_and_threads_agree(run_json, threads_run, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray runner not installed: pip install 'prefect-ray==0.6.0'")
    from prefect_ray import RayTaskRunner

    config, threads_store, threads = threads_run
    submitted = []
    submit = RayTaskRunner.submit
    monkeypatch.setattr(RayTaskRunner, "submit", lambda self, task, *a, **k: submitted.append(task.name)
                        or submit(self, task, *a, **k))
    # the runner starts a local Ray (ray.init with its init_kwargs: 2 CPUs, no dashboard) and shuts it down
    run = run_json(config, tmp_path / "ray", "runner.kind=ray", "runner.max_workers=2", "runner.extract_shards=2",
                   "runner.grid_parts=2")
    assert not ray.is_initialized()
    assert {"prepare-model", "extract-gradients-shard", "train-seed", "rewrite"} <= set(submitted)
    assert submitted.count("extract-gradients-shard") == submitted.count("decoder-grid-part") == 2
    agree(run, threads)
    same_files(tmp_path / "ray", run, threads_store, threads)


def test_dask_without_address_starts_a_local_cluster():
    from prefect_dask import DaskTaskRunner

    from flows.pipeline import task_runner
    from gradiend_core.experiment import load_experiment

    r = task_runner(load_experiment(None, ["runner.kind=dask", "runner.max_workers=3"]))
    assert isinstance(r, DaskTaskRunner) and r.address is None
    assert r.cluster_kwargs["n_workers"] == 3 and r.cluster_kwargs["processes"] is True
    r = task_runner(load_experiment(None, ["runner.kind=dask", "runner.address=tcp://10.0.0.5:8786"]))
    assert r.address == "tcp://10.0.0.5:8786"


def test_ray_runner_settings():
    pytest.importorskip("prefect_ray", reason="Ray runner not installed: pip install 'prefect-ray==0.6.0'")
    from flows.pipeline import task_runner
    from gradiend_core.experiment import load_experiment

    r = task_runner(load_experiment(None, ["runner.kind=ray", "runner.max_workers=3"]))
    assert r.address is None and r.init_kwargs["num_cpus"] == 3 and r.init_kwargs["include_dashboard"] is False
    r = task_runner(load_experiment(None, ["runner.kind=ray", "runner.address=ray://head:10001"]))
    assert r.address == "ray://head:10001" and "num_cpus" not in r.init_kwargs  # the cluster's own resources


@pytest.mark.extended  # ~1.5 min of cluster start-ups: `make test-extended` (CI runs it)
def test_a_suite_fans_its_pairs_out_on_dask_and_ray_with_the_threads_results(run_json, prefect_home, tiny_model_dir,
                                                                              tmp_path, monkeypatch):
    """Two pairs on threads, on a 2-worker Dask cluster and on a local Ray: the same keys, metrics and
    comparison tables; on Dask the pairs' tasks ran in both worker processes."""
    ray = pytest.importorskip("ray", reason="Ray runner not installed: pip install 'prefect-ray==0.6.0'")
    from distributed import Client, LocalCluster, get_task_stream

    from gradiend_core.compare import read_comparison
    from gradiend_core.testing import tiny_experiment

    exp = tiny_experiment(tiny_model_dir, name="suite-runners")
    exp["data"].update(classes={"3SG": ["he", "she"], "3PL": ["they"], "IT": ["it"]}, max_per_class=8, neutral_max=4)
    exp["extract"].update(max_neutral_rows=4, max_training_masked_rows=4)
    exp["train"].update(max_seeds=1, max_steps=6)
    exp["suite"] = {"pairs": [["3SG", "3PL"], ["3SG", "IT"]], "compare": {"measures": ["cosine"], "topk": 20}}
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump(exp, sort_keys=False))
    threads = run_json(config, tmp_path / "threads", "runner.kind=threads", "runner.max_workers=2")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client, get_task_stream(client) as stream:
        dask = run_json(config, tmp_path / "dask", "runner.kind=dask", f"runner.address={cluster.scheduler_address}")
    assert len({t["worker"] for t in stream.data}) == 2
    run = run_json(config, tmp_path / "ray", "runner.kind=ray", "runner.max_workers=2")
    assert not ray.is_initialized()
    for other in (dask, run):
        assert not any(st["cached"] for st in other["stages"].values())
        assert {k: v["key"] for k, v in other["stages"].items()} == {k: v["key"] for k, v in threads["stages"].items()}
        assert same_metrics(other["metrics"], threads["metrics"]), (other["metrics"], threads["metrics"])
        assert other["shared"]["extract-gradients-shared"]["rows_computed"] == \
            threads["shared"]["extract-gradients-shared"]["rows_computed"]
        sim, want = (read_comparison(s["comparison"]["dir"])["similarity"] for s in (other, threads))
        assert sim[["row_id", "col_id", "measure", "group_by"]].equals(want[["row_id", "col_id", "measure", "group_by"]])
        assert sim["value"].to_numpy() == pytest.approx(want["value"].to_numpy(), rel=1e-5)
