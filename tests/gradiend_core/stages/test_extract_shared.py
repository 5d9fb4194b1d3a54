"""A suite's extractions in one pass (stages/extract_shared.py): the union of the pairs' kept dims and
each store's columns in it; a build stopped by a full disk after some row blocks says what it kept, resumes from each store's recorded
blocks and ends byte-identical to an uninterrupted one; a store already built is left alone."""
import errno
import hashlib
from pathlib import Path

import pytest
import torch
import yaml

from gradiend_core import extraction as xg
from gradiend_core.errors import StoreError
from gradiend_core.experiment import load_experiment
from gradiend_core.param_map import ParamMap, ParamSpec
from gradiend_core.stages.extract_shared import signature, union_map
from gradiend_core.stages.plan import plan, run_plan, run_shared, shared_groups
from gradiend_core.store import LocalStore
from gradiend_core.testing import tiny_experiment


def test_union_map_and_each_stores_columns():
    pmap = ParamMap([ParamSpec("a", (4,), None), ParamSpec("b", (3,), None)])  # 7 local dims
    keeps = [torch.tensor([0, 2, 5]), torch.tensor([2, 3, 6])]
    union, cols = union_map(pmap, keeps)
    assert union.input_dim == 5  # dims 0, 2, 3, 5, 6
    assert [c.tolist() for c in cols] == [[0, 1, 3], [1, 2, 4]]
    full, cols = union_map(pmap, [keeps[0], None])  # one store keeps every dim: compute them all
    assert full is pmap and cols[1] is None and cols[0].tolist() == [0, 2, 5]


def test_signature_leaves_out_only_the_pair():
    a = {"extract": {"dtype": "float16"}, "pre_prune": {"enabled": True, "topk": 0.1, "pair": ["A", "B"]}}
    b = {"extract": {"dtype": "float16"}, "pre_prune": {"enabled": True, "topk": 0.1, "pair": ["A", "C"]}}
    assert signature(a) == signature(b) != signature({**b, "pre_prune": {**b["pre_prune"], "topk": 0.2}})


def suite_steps(model_dir: Path, d: Path):
    exp = tiny_experiment(model_dir, name="shared")
    exp["data"].update(classes={"3SG": ["he", "she"], "3PL": ["they"], "IT": ["it"]}, max_per_class=12,
                       neutral_max=6)
    exp["extract"].update(batch_size=4, micro_batch_size=2, max_neutral_rows=4, max_training_masked_rows=4)
    exp["suite"] = {"pairs": "all"}
    (d / "suite.yaml").write_text(yaml.safe_dump(exp, sort_keys=False))
    return plan(load_experiment(d / "suite.yaml"))


def upstream(store: LocalStore, steps, member) -> dict:
    """The member's inputs (model, data), built."""
    return {n: run_plan(store, steps, until=i)[i] for n, i in member.inputs.items()}


def digests(store: LocalStore, steps, members) -> dict:
    out = {}
    for p in members:
        root = store.path(p.stage, p.key)
        out[p.id] = {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
                     for f in sorted(root.rglob("*")) if f.is_file() and f.name != "manifest.json"}
    return out


def test_a_killed_pass_resumes_each_store_and_ends_byte_identical(stage_model_dir, tmp_path, monkeypatch):
    steps = suite_steps(stage_model_dir, tmp_path)
    members = shared_groups(steps)["extract-gradients-shared"]
    assert [p.id for p in members] == ["3SG-3PL/extract-gradients", "3SG-IT/extract-gradients",
                                       "3PL-IT/extract-gradients"]
    whole = LocalStore(tmp_path / "whole")
    inputs = upstream(whole, steps, members[0])
    record = run_shared(whole, members, inputs)
    n = whole.load("extract-gradients", members[0].key)["info"]["n_rows"]
    assert len(record["built"]) == 3 and record["rows_computed"] == n
    assert run_shared(whole, members, inputs)["built"] == []  # all there: nothing computed

    killed = LocalStore(tmp_path / "killed")
    inputs = upstream(killed, steps, members[0])
    write, calls = xg.write_block, []

    def dies_after_two_blocks(*args, **kw):
        if len(calls) == 2 * 3:  # two row blocks of the three stores
            raise OSError(errno.ENOSPC, "No space left on device")
        calls.append(args[1])
        return write(*args, **kw)

    monkeypatch.setattr(xg, "write_block", dies_after_two_blocks)
    with pytest.raises(StoreError, match=r"the disk filled up; .* \(24 rows of the 3 stores are kept\)"):
        run_shared(killed, members, inputs)
    monkeypatch.setattr(xg, "write_block", write)
    again = run_shared(killed, members, inputs)
    assert len(again["built"]) == 3 and again["rows_computed"] == n - 2 * 4  # the two recorded blocks kept
    assert digests(killed, steps, members) == digests(whole, steps, members)
