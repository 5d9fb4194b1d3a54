"""UI report of create-data: rows per class, split, transition and target word."""
from __future__ import annotations

from ..data.schema import SPLITS
from .markdown import artifact_key, header, info, main_key, md_table, out, read_json, spec

EXTRA = ("rows",)


def data_rows_table(training, class_order: list[str]) -> list[dict]:
    """One row per (class, target word): count per split and total; classes in config order."""
    counts = training.groupby(["factual_class", "target_word", "split"]).size()
    rows = []
    for (cls, word), per_split in counts.groupby(level=[0, 1]):
        r = {"class": cls, "target_word": word}
        r.update({s: int(per_split.get((cls, word, s), 0)) for s in SPLITS})
        r["total"] = sum(r[s] for s in SPLITS)
        rows.append(r)
    rank = {c: i for i, c in enumerate(class_order)}
    rows.sort(key=lambda r: (rank.get(r["class"], len(rank)), -r["total"], r["target_word"]))
    return rows


def _markdown(m: dict, s: dict, classes: list[str]) -> str:
    split_rows = [{"class": c, **{sp: s["class_splits"].get(c, {}).get(sp, 0) for sp in SPLITS},
                   "total": s["classes"].get(c, 0)} for c in classes]
    words = [{"class": c, "words": ", ".join(f"{w} ({n})" for w, n in sorted(
        s["target_words"].get(c, {}).items(), key=lambda kv: -kv[1]))} for c in classes]
    return (header(m, "Training data")
            + f"\n**{s['n_rows']}** training rows from **{s['n_sentences']}** sentences, "
              f"**{s['neutral']}** neutral sentences.\n\n"
            + "**Rows per class and split**\n\n" + md_table(split_rows) + "\n\n"
            + "**Rows per transition**\n\n"
            + md_table([{"transition": t, "rows": n} for t, n in s.get("transitions", {}).items()]) + "\n\n"
            + "**Target words** (rows per word)\n\n" + md_table(words))


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    import pandas as pd

    s = read_json(out(m) / "summary.json")
    classes = [c for c, _ in info(m)["classes"]] if info(m).get("classes") else list(s["classes"])
    training = pd.read_parquet(out(m) / "training.parquet", columns=["factual_class", "target_word", "split"])
    desc = f"{s['n_rows']} training rows, {len(classes)} classes"
    return [spec("markdown", main_key(m, exp), _markdown(m, s, classes), desc),
            spec("table", artifact_key(exp, m["stage"], "rows"), data_rows_table(training, classes),
                 "training rows per class, target word and split")]
