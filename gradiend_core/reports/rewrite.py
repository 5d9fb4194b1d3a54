"""UI report of rewrite: the selected cell and P(target class) before/after on held-out sentences."""
from __future__ import annotations

from .markdown import fmt, header, info, interval, json_safe, main_key, md_table, out, read_json, spec


def rewrite_rows(examples: list[dict], target: str) -> list[dict]:
    b, a = f"p_{target}_base", f"p_{target}_rewritten"
    return json_safe([{"masked": e["masked"], "factual": e["factual"], "p_base": e.get(b), "p_rewritten": e.get(a),
                       "change": None if e.get(a) is None or e.get(b) is None else e[a] - e[b]} for e in examples])


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    i = info(m)
    target, direction = i.get("target_class"), i.get("direction")
    sel = i.get("selected") or {}
    examples = read_json(out(m) / "examples.json") if (out(m) / "examples.json").is_file() else []
    means = i.get("examples_mean") or {}
    model_dir = i.get("model_dir", str(out(m) / "model"))
    cell = {"feature factor": sel.get("feature_factor"), "learning rate": sel.get("learning_rate"),
            "metric (base -> rewritten)": f"{fmt(sel.get('base_value'))} -> {fmt(sel.get('value'))}",
            "change [CI]": interval(sel.get("change"), sel.get("change_lo"), sel.get("change_hi")),
            "LMS (base -> rewritten)": f"{fmt(sel.get('base_lms'))} -> {fmt(sel.get('lms'))}",
            "LMS diff [CI]": interval(sel.get("lms_diff"), sel.get("lms_diff_lo"), sel.get("lms_diff_hi")),
            "policy": sel.get("policy")}
    metric = (f"P({target}) on the other classes' rows" if direction == "strengthen"
              else f"1 - P({target}) on {target} rows")
    md = (header(m, f"Rewritten model ({direction} {target})") + f"\nsaved to `{model_dir}`\n\n"
          + f"metric: {metric} (the decoder grid's rows; intervals: paired bootstrap against the base model)\n\n"
          + md_table([cell])
          + f"\n\n**P({target}) on held-out sentences, base vs rewritten** (mean "
            f"{fmt(means.get(f'p_{target}_base'))} -> {fmt(means.get(f'p_{target}_rewritten'))})\n\n"
          + md_table(rewrite_rows(examples, target)) + _load_hint(i.get("pipeline_task")))
    return [spec("markdown", main_key(m, exp), md, f"{direction} {target}: {model_dir}")]


def _load_hint(task: str | None) -> str:
    if task:
        return f"\n\nload it with `transformers.pipeline(\"{task}\", model=...)`."
    return "\n\nload it with `transformers.pipeline(\"fill-mask\", model=...)` (`text-generation` for a causal LM)."
