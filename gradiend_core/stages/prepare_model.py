"""prepare-model: resolve the base model, fit its objective's head when it has none (a masked-LM head; the
auxiliary head of clm_mlm_head, keyed by the class words), record its digest."""
from __future__ import annotations

from pathlib import Path

from ..lm import load_base_model, resolve_model_path
from ..reports import prepare_model as report
from ..data.corpus import class_map, corpus_identity, corpus_texts, file_digest
from .common import pin_torch_threads, section
from .declaration import Report, Stage


def config_slice(cfg) -> dict:
    path = resolve_model_path(cfg.model.name_or_path)  # fails early on a missing model
    # model.device / model.dtype: where and how later stages run the model, not what this stage prepares
    # (the head is fitted on the CPU in float32, the model every later stage loads and casts)
    model = {k: v for k, v in section(cfg.model).items() if k not in ("device", "dtype")}
    conf = {"model": model, "model_files": file_digest(str(path)), "corpus": corpus_identity(cfg.data)}
    if _head_needs_classes(cfg.model.objective):  # a head over the class words (clm_mlm_head): they key it
        conf["classes"] = class_map(cfg.data)
    return conf


def _head_needs_classes(objective: str) -> bool:
    from ..objectives import AUTO, get_objective

    return objective != AUTO and get_objective(objective).head_needs_classes


def paths(cfg) -> dict:
    return {"corpus": cfg.data.corpus, "table": cfg.data.table}


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    pin_torch_threads(2)  # see common.pin_torch_threads
    from ..experiment import DataSection, ModelSection
    from ..head import HeadFitConfig

    m = ModelSection(**{**conf["model"], "head": HeadFitConfig(**conf["model"]["head"])})
    base = load_base_model(m.name_or_path, allow_missing_head=m.fit_head != "never", objective=m.objective)
    src_dir = str(resolve_model_path(m.name_or_path))
    head = None
    if base.objective.fits_head and (base.head_fitted is False or m.fit_head == "always"):
        data = DataSection(text_column=conf["corpus"]["text_column"], builtin=conf["corpus"]["builtin"],
                           corpus=paths.get("corpus"), table=paths.get("table"),
                           table_columns=conf["corpus"].get("table_columns"))
        texts = corpus_texts(data)[: m.head.max_texts]
        progress(0.05, f"fitting the {base.objective.head_kind} head on {len(texts)} texts")
        head = base.fit_head(texts, m.head, classes=conf.get("classes"))
        base.model.save_pretrained(out / "model")
        base.tokenizer.save_pretrained(out / "model")
        # the digest of exactly what downstream stages will load
        base = load_base_model(out / "model", objective=base.objective.name)
    # a fitted model lives in this output's model/; otherwise the source directory is used as is
    return {"name_or_path": m.name_or_path, "source_dir": src_dir,
            "digest": base.digest, "objective": base.objective.name, "head": head,
            "n_parameters": int(sum(p.numel() for p in base.model.parameters()))}


STAGE = Stage(name="prepare-model", version="1", sections=("model",), build=build, conf=config_slice,
              paths=paths, report=Report(artifacts=report.artifacts))
