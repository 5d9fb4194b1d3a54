"""Report of evaluate-encoder: the encoded values' distribution plot and the metrics."""
from __future__ import annotations

from pathlib import Path

from .images import md_image, report_file
from .markdown import fmt, header, info, main_key, md_table, out, read_json, spec

PLOT = "encoder_distributions.png"      # the evaluated split: pair classes, other classes, neutral rows
SPLITS_PLOT = "encoder_by_split.png"     # the pair's rows of every split
WORDS_PLOT = "encoder_by_target_word.png"
CODE = ("gradiend_core.reports.evaluate_encoder", "gradiend_core.plots")


def draw(m: dict, dest: Path) -> dict:
    import pandas as pd

    from ..plots import plot_encoder_distributions, plot_target_words

    from ..encoder_eval import group_names, group_order

    df = pd.read_parquet(out(m) / "encoded.parquet")
    df["group"] = group_names(df)  # the plots' names, from the stored types and classes
    split, order = info(m).get("split", "test"), group_order(df)
    at = df[(df["split"] == split) | df["type"].str.startswith("neutral")]
    plot_encoder_distributions(at.drop(columns="split"), dest / PLOT, order,
                               f"Encoded values on the {split} split: the pair, other classes, neutral rows")
    plot_encoder_distributions(df[df["type"] == "training"], dest / SPLITS_PLOT, order,
                               "Encoded values of the pair's rows per split")
    words = df[df["type"].isin(("training", "other_class"))]
    classes = [g.removesuffix(" (other)") for g in order]
    plot_target_words(words, dest / WORDS_PLOT, f"Encoded value per target word (all splits, {len(words)} rows)",
                      classes)
    return {"plots": [PLOT, SPLITS_PLOT, WORDS_PLOT]}


def _wider(mt: dict) -> str:
    """Markdown of the wider report: per split, held-out words, other classes, neutral kinds, words."""
    splits = [{"split": s, "correlation": b["correlation"], "accuracy": b["accuracy"], "n": b["n"],
               **{f"mean {k}": v for k, v in b["mean_by_class"].items()}} for s, b in mt.get("by_split", {}).items()]
    held = [{"split": s, "correlation": b["correlation"], "n": b["n"], "words": ", ".join(b["words"][:12])}
            for s, b in mt.get("held_out_words", {}).items()]
    groups = [{"group": g, **v} for key in ("other_classes", "neutral") for g, v in mt.get(key, {}).items()]
    words = [{"class": c, "word": w, **v} for c, ws in mt.get("by_target_word", {}).items() for w, v in ws.items()]
    return ("\n\n**Per split** (the pair's rows)\n\n" + md_table(splits)
            + ("\n\n**Words never seen in training** (per held-out split)\n\n" + md_table(held) if held else "")
            + "\n\n**Other classes and neutral rows** (label 0)\n\n" + md_table(groups)
            + "\n\n**Per target word** (all splits)\n\n"
            + md_table(words, ["class", "word", "mean", "std", "n"]))


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
          + ("\n\n**Mean encoded value per group**\n\n" + md_table(groups) if groups else "") + _wider(mt)
          + "\n\n" + md_image(report_file(report, PLOT), "encoder distributions")
          + "\n\n" + md_image(report_file(report, SPLITS_PLOT), "encodings per split")
          + "\n\n" + md_image(report_file(report, WORDS_PLOT), "encodings per target word"))
    return [spec("markdown", main_key(m, exp), md, f"encoder correlation {fmt(mt['correlation'])}")]
