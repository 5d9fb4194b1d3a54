"""extract-gradients publishes its gradient store without reading it back: the writer thread hashes
each block's zarr shards right after writing them, and the manifest's digests are the files' own."""
import hashlib
import os
from pathlib import Path

import yaml

from gradiend_core import io
from gradiend_core.experiment import load_experiment
from gradiend_core.manifests import out_path
from gradiend_core.stages.plan import plan, run_plan
from gradiend_core.testing import save_tiny, tiny_experiment, tiny_mlm
from gradiend_core.store import LocalStore


def test_gradient_files_are_hashed_once_by_the_writer_and_the_manifest_is_right(tmp_path, monkeypatch):
    from gradiend_core.data.builtin import builtin_vocabulary

    model_dir = save_tiny(*tiny_mlm(seed=0, hidden=32, layers=2, words=builtin_vocabulary()), tmp_path / "tiny")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_experiment(model_dir)))
    reads: list[tuple[str, bool]] = []  # (file, read while publishing)
    publishing = []
    real, publish = io.sha256_file, LocalStore.publish
    monkeypatch.setattr(io, "sha256_file", lambda p, *a: reads.append((os.fspath(p), bool(publishing))) or real(p, *a))

    def watched_publish(self, *a, **k):
        publishing.append(True)
        try:
            return publish(self, *a, **k)
        finally:
            publishing.clear()

    monkeypatch.setattr(LocalStore, "publish", watched_publish)

    store = LocalStore(tmp_path / "store")
    done = run_plan(store, plan(load_experiment(cfg)), until="extract-gradients")
    m = done["extract-gradients"]
    zarr_files = {k: v for k, v in m["files"].items() if k.startswith("gradients.zarr/")}
    shards = [k for k in zarr_files if "/c/" in k]
    assert len(shards) >= 2 * 2  # factual and alternative, several row blocks each
    hashed = [(Path(r).name, during_publish) for r, during_publish in reads if "gradients.zarr" in r]
    # each file read once, by the writer, none again when publishing
    assert sorted(hashed) == sorted((Path(k).name, False) for k in zarr_files)
    for rel, meta in zarr_files.items():
        assert meta["sha256"] == hashlib.sha256((out_path(m) / rel).read_bytes()).hexdigest()
    assert store.problems("extract-gradients", m["key"], deep=True) == []
