"""Suite configs (gradiend_core/suite.py) and the suite plan (stages/plan.suite_plan), without running:
the pairs of `all`, `one_vs_rest` and explicit lists, per-pair overrides, one-line errors, and a pair's
steps carrying exactly the keys of the same file run as a single pair."""
import pytest
import yaml

from gradiend_core.errors import ConfigError
from gradiend_core.experiment import load_experiment
from gradiend_core.stages.plan import plan
from gradiend_core.suite import pair_configs

CLASSES = {"1SG": ["i"], "3SG": ["he", "she"], "3PL": ["they"]}


def load(tmp_path, suite=None, **sections):
    exp = {"data": {"classes": CLASSES}, **sections}
    if suite is not None:
        exp["suite"] = suite
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(exp, sort_keys=False))
    return load_experiment(tmp_path / "e.yaml")


def keys(steps, prefix=""):
    return {sid.removeprefix(prefix): p.key for sid, p in steps.items()}


def test_all_is_every_unordered_pair_in_class_order(tmp_path):
    cfgs = pair_configs(load(tmp_path, {"pairs": "all"}))
    assert list(cfgs) == ["1SG-3SG", "1SG-3PL", "3SG-3PL"]
    assert [c.pair() for c in cfgs.values()] == [("1SG", "3SG"), ("1SG", "3PL"), ("3SG", "3PL")]
    assert all(c.suite is None for c in cfgs.values())


def test_one_vs_rest_merges_the_other_classes(tmp_path):
    cfgs = pair_configs(load(tmp_path, {"pairs": "one_vs_rest"}))
    assert list(cfgs) == ["1SG-non_1SG", "3SG-non_3SG", "3PL-non_3PL"]
    assert cfgs["3SG-non_3SG"].data.merge == {"non_3SG": ["1SG", "3PL"]}
    assert cfgs["3SG-non_3SG"].pair() == ("3SG", "non_3SG")


def test_overrides_apply_to_their_pair_only(tmp_path):
    cfgs = pair_configs(load(tmp_path, {"pairs": [["3PL", "1SG"], ["3SG", "1SG"]],
                                        "overrides": {"3SG-1SG": {"train": {"max_steps": 7}}}}))
    assert cfgs["3SG-1SG"].train.max_steps == 7 and cfgs["3PL-1SG"].train.max_steps != 7
    assert cfgs["3PL-1SG"].pair() == ("3PL", "1SG")  # an explicit pair keeps its order


@pytest.mark.parametrize("suite, extra, says", [
    ({"pairs": [["1SG", "2"]]}, {}, "suite.pairs[0]: '2' is not a data class"),
    ({"pairs": [["1SG", "1SG"], ["1SG", "3PL"]]}, {}, "must name two different classes"),
    ({"pairs": [["1SG", "3SG"], ["3SG", "1SG"]]}, {}, "lists a pair twice"),
    ({"pairs": [["1SG", "3SG"]]}, {}, "a suite compares at least 2"),
    ({"pairs": "every"}, {}, "'every' is not one of all, one_vs_rest"),
    ({"overrides": {"1SG-2": {}}}, {}, "'1SG-2' is not a pair of the suite"),
    ({"overrides": {"1SG-3SG": {"train": {"max_step": 5}}}}, {}, "unknown key 'max_step'"),
    ({"overrides": {"1SG-3SG": {"runner": {"max_workers": 1}}}}, {}, "'runner' applies to the whole suite"),
    ({"compare": {"measures": ["cosin"]}}, {}, "'cosin' is not one of"),
    ({}, {"train": {"pair": ["1SG", "3SG"]}}, "train.pair and suite are both set"),
])
def test_bad_suites_fail_at_load_in_one_line(tmp_path, suite, extra, says):
    with pytest.raises(ConfigError, match=None) as e:
        load(tmp_path, suite, **extra)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_each_pairs_steps_have_the_single_pair_keys(tmp_path):
    steps = plan(load(tmp_path, {"pairs": "all", "rewrite": True}))
    for pid, pair in (("1SG-3PL", ["1SG", "3PL"]), ("3SG-3PL", ["3SG", "3PL"])):
        single = plan(load(tmp_path, train={"pair": pair}))
        ours = {sid: p for sid, p in steps.items() if p.pair == pid or p.pair is None and sid != "compare"}
        assert keys(single) == keys(ours, f"{pid}/")


def test_shared_steps_once_without_rewrites_by_default_and_the_comparison_last(tmp_path):
    steps = plan(load(tmp_path, {"pairs": "all"}))
    assert [sid for sid, p in steps.items() if p.pair is None] == ["prepare-model", "create-data", "compare"]
    assert not any(p.stage in ("decoder-grid", "rewrite") for p in steps.values())
    assert steps["1SG-3SG/extract-gradients"].inputs == {"model": "prepare-model", "data": "create-data"}
    assert set(steps["compare"].inputs.values()) == {f"{pid}/{s}" for pid in ("1SG-3SG", "1SG-3PL", "3SG-3PL")
                                                     for s in ("select-seed", "evaluate-encoder")}


def test_without_pre_pruning_the_pairs_share_one_extraction(tmp_path):
    steps = plan(load(tmp_path, {"pairs": "all"}, pre_prune={"enabled": False}))
    assert [s for s, p in steps.items() if p.stage == "extract-gradients"] == ["extract-gradients"]


def test_the_comparison_key_follows_the_pairs_and_settings_only(tmp_path):
    base = plan(load(tmp_path, {"pairs": "all"}))["compare"].key
    assert plan(load(tmp_path, {"pairs": "all", "rewrite": True}))["compare"].key == base
    assert plan(load(tmp_path, {"pairs": "all", "compare": {"topk": 10}}))["compare"].key != base
    assert plan(load(tmp_path, {"pairs": [["1SG", "3SG"], ["1SG", "3PL"]]}))["compare"].key != base
