"""The run report: every stage of one flow run (key, reused or ran, seconds, its artifacts) and the headline."""
from __future__ import annotations

from .markdown import artifact_key, fmt, interval, link, md_table


def _headline(summary: dict) -> list[dict]:
    mt = summary.get("metrics") or {}
    rows = []
    if "encoder_correlation" in mt:
        rows.append({"metric": f"encoder correlation ({mt.get('encoder_split', '?')} split)",
                     "value": fmt(mt["encoder_correlation"])})
    if "best_seed" in mt:
        rows.append({"metric": "best seed",
                     "value": f"{mt['best_seed']} ({mt.get('converged_seeds', '?')} convergent)"})
    rewrites = summary.get("rewrites")
    if rewrites is None and mt.get("selected"):  # a summary from before several rewrites
        rewrites = [{"class": mt.get("target_class"), "direction": mt.get("direction"), "selected": mt["selected"],
                     "model": summary.get("rewritten_model")}]
    for r in rewrites or []:
        rows += _rewrite_rows(r)
    return rows


def _rewrite_rows(r: dict) -> list[dict]:
    sel = r.get("selected") or {}
    rows = [{"metric": f"rewrite: {r.get('direction')} {r.get('class')}",
             "value": f"{fmt(sel.get('base_value'))} -> {fmt(sel.get('value'))} "
                      f"(change {interval(sel.get('change'), sel.get('change_lo'), sel.get('change_hi'))}; "
                      f"feature factor {fmt(sel.get('feature_factor'))}, lr {fmt(sel.get('learning_rate'))})"},
            {"metric": f"LMS (base -> rewritten, {r.get('direction')} {r.get('class')})",
             "value": f"{fmt(sel.get('base_lms'))} -> {fmt(sel.get('lms'))} "
                      f"(difference {interval(sel.get('lms_diff'), sel.get('lms_diff_lo'), sel.get('lms_diff_hi'))})"}]
    if r.get("model"):
        rows.append({"metric": f"rewritten model ({r.get('direction')} {r.get('class')})", "value": f"`{r['model']}`"})
    return rows


def run_report_markdown(summary: dict, manifests: dict[str, dict], keys: dict[str, list[str]], experiment: str,
                        ui_url: str | None = None) -> str:
    """The run report; `keys`: plan step id -> the artifact keys of that step's report."""
    stages = summary.get("stages") or {}
    order = list(dict.fromkeys(list(stages) + list(manifests)))
    rows, all_keys = [], []
    for sid in order:
        st, m = stages.get(sid) or {}, manifests.get(sid) or {}
        cached = st.get("cached", m.get("cached"))
        all_keys += keys.get(sid, [])
        rows.append({"stage": sid, "key": f"`{st.get('key', m.get('key', '?'))}`",
                     "status": "reused" if cached else "ran",
                     "seconds": 0.0 if cached else float(st.get("seconds", m.get("seconds", 0.0)) or 0.0),
                     "artifacts": ", ".join(f"`{k}`" for k in keys.get(sid, []))})
    n_cached = sum(r["status"] == "reused" for r in rows)
    md = [f"# gradiend-flow run: {experiment}", "",
          f"{len(rows)} stages ({n_cached} reused, {len(rows) - n_cached} ran) · total "
          f"{float(summary.get('seconds') or 0):.1f} s · store `{summary.get('store', '?')}`", "",
          "## Headline", "", md_table(_headline(summary)), "", "## Stages", "", md_table(rows), "",
          "## Artifacts", ""]
    md += [f"- {link(k, ui_url)}" for k in all_keys + [artifact_key(experiment, "report")]]
    return "\n".join(md)
