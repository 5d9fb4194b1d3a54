"""Experiment config: the embedded default, YAML files, --set overrides, clear errors."""
import dataclasses

import pytest
import yaml

from gradiend_core.errors import ConfigError
from gradiend_core.experiment import ExperimentConfig, load_experiment


def test_example_file_is_the_embedded_default():
    assert load_experiment("examples/pronoun_number.yaml") == load_experiment(None)
    assert load_experiment(None) == ExperimentConfig()


def test_example_file_spells_out_every_setting():
    def keys(d, prefix=""):
        return {prefix + k for k in d} | {x for k, v in d.items() if isinstance(v, dict) and k != "classes"
                                         for x in keys(v, f"{prefix}{k}.")}

    with open("examples/pronoun_number.yaml") as f:
        spelled = keys(yaml.safe_load(f))
    assert spelled == keys(dataclasses.asdict(ExperimentConfig()))


def test_overrides_and_yaml_numbers(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text("train:\n  learning_rate: 1e-4\n  max_steps: 7\n")
    cfg = load_experiment(p, ["train.max_seeds=2", "decoder_grid.learning_rates=[1, 0.5]"])
    assert (cfg.train.learning_rate, cfg.train.max_steps, cfg.train.max_seeds) == (1e-4, 7, 2)
    assert cfg.decoder_grid.learning_rates == [1.0, 0.5]


@pytest.mark.parametrize("text, overrides, needle", [
    ("train:\n  learnig_rate: 1\n", [], "did you mean 'learning_rate'"),
    ("trian:\n  x: 1\n", [], "did you mean 'train'"),
    ("train:\n  max_steps: lots\n", [], "train.max_steps: expected int"),
    ("train:\n  learning_rate: -1\n", [], "train.learning_rate must be > 0"),
    ("train: [unclosed\n", [], "not valid YAML at line"),
    ("- a\n- b\n", [], "must hold a mapping"),
    ("", ["train.source=alt"], "not one of factual, alternative, diff"),
    ("", ["data.train_ratio=0.5"], "sum to"),
    ("", ["nosuchsection.x=1"], "unknown section"),
    ("", ["train"], "expected section.key=value"),
    ("", ["runner.grid_parts=0"], "runner.grid_parts must be an integer >= 1"),
    ("", ["runner.grid_parts=-3"], "set runner.grid_parts: 1 for one task"),
    ("", ["runner.grid_parts=two"], "runner.grid_parts: expected int, got 'two'"),
    ("", ["runner.grid_parts=2.5"], "runner.grid_parts: expected int, got 2.5"),
    ("", ["rewrite.targets=[]"], "rewrite.targets is empty"),
    ("", ["rewrite.targets=[{clas: 3SG}]"], "did you mean 'class'"),
    ("", ["rewrite.targets=[{direction: weaken}]"], "rewrite.targets[0] has no class"),
    ("", ["rewrite.targets=[{class: 3SG, direction: down}]"], "not one of strengthen, weaken"),
    ("", ["rewrite.targets=[{class: 3SG}, {class: 3SG, direction: strengthen}]"], "repeats"),
    ("", ["rewrite.targets=[{class: 3SG}]", "rewrite.target_class=3PL"], "move that request into targets"),
    ("", ["decoder_grid.lms=perplexity"], "not one of accuracy, log_prob"),
    ("", ["decoder_grid.policy=lms_significance", "decoder_grid.alpha=0"], "alpha must be a number in (0, 1)"),
])
def test_bad_config_errors_are_one_line(tmp_path, text, overrides, needle):
    p = tmp_path / "e.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_experiment(p if text else None, overrides)  # no text: the embedded default (an empty file is refused)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "nope.yaml")
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_experiment(p)


def test_every_section_round_trips_through_yaml(tmp_path):
    cfg = ExperimentConfig()
    p = tmp_path / "e.yaml"
    p.write_text(yaml.safe_dump(dataclasses.asdict(cfg)))
    assert load_experiment(p) == cfg


def test_person_number_example_trains_a_pair_of_five_classes():
    cfg = load_experiment("examples/person_number.yaml")
    from gradiend_core.data.corpus import class_map

    assert list(class_map(cfg.data)) == ["1SG", "1PL", "2", "3SG", "3PL"] and cfg.pair() == ("1SG", "1PL")
    with pytest.raises(ConfigError, match="train.pair: '3SF' is not a data class"):
        load_experiment("examples/person_number.yaml", ["train.pair=[1SG, 3SF]"])


def test_rewrite_requests_are_plan_steps_with_their_own_keys():
    from gradiend_core.stages.plan import plan
    from gradiend_core.stages.runner import hashed

    def rewrites(*sets):
        return {sid: p for sid, p in plan(load_experiment(None, list(sets))).items() if p.stage == "rewrite"}

    default = rewrites()
    assert list(default) == ["rewrite-3SG-strengthen"]  # the shorthand: the first class, strengthened
    assert hashed(default["rewrite-3SG-strengthen"].conf) == {"request": {"class": "3SG", "direction": "strengthen"}}
    assert list(rewrites("rewrite.target_class=3PL", "rewrite.direction=weaken")) == ["rewrite-3PL-weaken"]
    two = rewrites("rewrite.targets=[{class: 3SG}, {class: 3PL, direction: weaken}]")
    assert list(two) == ["rewrite-3SG-strengthen", "rewrite-3PL-weaken"]
    assert two["rewrite-3SG-strengthen"].key == default["rewrite-3SG-strengthen"].key  # same request, same key
    with pytest.raises(ConfigError, match="did you mean '3PL'"):
        rewrites("rewrite.targets=[{class: 3PLL}]")
