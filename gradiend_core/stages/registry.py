"""Every declared stage, in pipeline order (dependencies first). Adding a stage: its module (build +
STAGE), its config section in experiment.py, its test in tests/gradiend_core/stages/, and one line here."""
from __future__ import annotations

from . import (compare, create_data, decoder_grid, evaluate_encoder, extract_gradients, post_prune, pre_prune,
               prepare_model, rewrite, select_seed, train_seed)
from .declaration import Stage

STAGES: tuple[Stage, ...] = (
    prepare_model.STAGE,
    create_data.STAGE,
    extract_gradients.STAGE,
    pre_prune.STAGE,
    train_seed.STAGE,
    select_seed.STAGE,
    post_prune.STAGE,
    evaluate_encoder.STAGE,
    decoder_grid.STAGE,
    rewrite.STAGE,
    compare.STAGE,  # suites only (plan.suite_plan)
)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    """The declaration of stage `name`."""
    from ..config_loader import suggest
    from ..errors import ConfigError

    if name not in BY_NAME:
        raise ConfigError(f"unknown stage '{name}'{suggest(name, BY_NAME)}; stages: {', '.join(BY_NAME)}")
    return BY_NAME[name]
