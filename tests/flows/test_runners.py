"""Task runners: the tiny experiment on a 2-worker Dask cluster and on threads computes the same stages
(same content keys) and the same metrics. Separate stores, so both runs really compute everything."""
import logging
import math

import pytest


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


def test_dask_and_threads_agree(run_json, prefect_home, tiny_config, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    logging.getLogger("distributed").setLevel(logging.WARNING)  # very chatty at INFO
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client, get_task_stream(client) as stream:
        dask = run_json(tiny_config, tmp_path / "dask", "runner.kind=dask",
                   f"runner.address={cluster.scheduler_address}")
    # every stage ran as a Dask task, spread over both worker processes (the seeds run side by side)
    assert len(stream.data) >= len(dask["stages"])
    assert len({t["worker"] for t in stream.data}) == 2

    threads = run_json(tiny_config, tmp_path / "threads", "runner.kind=threads", "runner.max_workers=2")
    for s in (dask, threads):
        assert not any(st["cached"] for st in s["stages"].values())  # both computed from scratch
    assert {k: v["key"] for k, v in dask["stages"].items()} == {k: v["key"] for k, v in threads["stages"].items()}
    assert same_metrics(dask["metrics"], threads["metrics"]), (dask["metrics"], threads["metrics"])


def test_dask_without_address_starts_a_local_cluster():
    from prefect_dask import DaskTaskRunner

    from flows.pipeline import task_runner
    from gradiend_core.experiment import load_experiment

    r = task_runner(load_experiment(None, ["runner.kind=dask", "runner.max_workers=3"]))
    assert isinstance(r, DaskTaskRunner) and r.address is None
    assert r.cluster_kwargs["n_workers"] == 3 and r.cluster_kwargs["processes"] is True
    r = task_runner(load_experiment(None, ["runner.kind=dask", "runner.address=tcp://10.0.0.5:8786"]))
    assert r.address == "tcp://10.0.0.5:8786"
