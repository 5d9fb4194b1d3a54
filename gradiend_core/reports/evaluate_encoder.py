"""Report of evaluate-encoder: the encoded values' distribution plot and the metrics."""
from __future__ import annotations

from pathlib import Path

from .images import md_image, report_file
from .markdown import fmt, header, info, main_key, md_table, out, read_json, spec

PLOT = "encoder_distributions.png"
CODE = ("gradiend_core.reports.evaluate_encoder", "gradiend_core.plots")


def draw(m: dict, dest: Path) -> dict:
    import pandas as pd

    from ..plots import plot_encoder_distributions

    plot_encoder_distributions(pd.read_parquet(out(m) / "encoded.parquet"), dest / PLOT)
    return {"plots": [PLOT]}


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    mt = read_json(out(m) / "metrics.json")
    subsets = [{"subset": k, **{c: mt[k].get(c) for c in ("correlation", "accuracy", "n")}}
               for k in ("all_data", "training_only", "target_classes_only") if k in mt]
    labels = list((mt.get("mean_by_class") or {}))
    per_label = [{"label": lab, **{s: mt.get(f"{s}_by_class", {}).get(lab) for s in
                                   ("n", "mean", "std", "min", "q1", "q3", "max")}} for lab in labels]
    groups = [{"group": g, "mean": v} for g, v in (mt.get("mean_by_class_name") or {}).items()]
    md = (header(m, "Encoder evaluation")
          + f"\ncorrelation (label vs encoded, {info(m).get('split', '?')} split): **{fmt(mt['correlation'])}** "
            f"over {mt.get('n')} rows\n\n" + md_table(subsets) + "\n\n**Encoded value per label**\n\n"
          + md_table(per_label)
          + ("\n\n**Mean encoded value per group**\n\n" + md_table(groups) if groups else "")
          + "\n\n" + md_image(report_file(report, PLOT), "encoder distributions"))
    return [spec("markdown", main_key(m, exp), md, f"encoder correlation {fmt(mt['correlation'])}")]
