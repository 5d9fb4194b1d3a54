"""Class merges: several raw classes of the data become one class of the GRADIEND's view (the reference's
class_merge_map), e.g. `data.merge: {masculine: [masc_nom, masc_acc], feminine: [fem_nom, fem_acc]}`.

Rows are created for the raw classes (their words, their alternatives), then relabelled: factual_class and
alternative_class become the merged names, `transition` keeps the raw transition ("masc_nom->fem_acc"), and
rows between two raw classes of one merged class are dropped (they are not a change of the merged
class). A merged class's words are the union of its raw classes' words, in order.
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from gradiend_core.errors import ConfigError


def check_merge(merge: Mapping[str, list[str]] | None, classes: Mapping[str, list[str]]) -> None:
    """Every raw class in at most one group, every name known, merged names not a kept raw class."""
    if not merge:
        return
    owner: dict[str, str] = {}
    for name, raws in merge.items():
        if not raws:
            raise ConfigError(f"data.merge.{name} lists no class; give the raw classes it merges")
        for raw in raws:
            if raw not in classes:
                raise ConfigError(f"data.merge.{name}: '{raw}' is not a data class; use some of "
                                  f"{', '.join(classes)}")
            if raw in owner:
                raise ConfigError(f"data.merge: class '{raw}' is in '{owner[raw]}' and '{name}'; merge it once")
            owner[raw] = name
    clash = [n for n in merge if n in classes and n not in owner]
    if clash:
        raise ConfigError(f"data.merge: '{clash[0]}' is also a class that is not merged; rename the group")
    if len(merged_class_map(classes, merge)) < 2:
        raise ConfigError("data.merge leaves fewer than 2 classes; a GRADIEND needs two")


def merged_name(merge: Mapping[str, list[str]] | None) -> dict[str, str]:
    """raw class -> merged class (only the merged ones)."""
    return {raw: name for name, raws in (merge or {}).items() for raw in raws}


def merged_class_map(classes: Mapping[str, list[str]], merge: Mapping[str, list[str]] | None) -> dict[str, list[str]]:
    """Merged class -> union of its raw classes' words, classes in the order their first raw class has."""
    to = merged_name(merge)
    out: dict[str, list[str]] = {}
    for raw, words in classes.items():
        ws = out.setdefault(to.get(raw, raw), [])
        ws += [w for w in words if w not in ws]
    return out


def apply_merge(df: pd.DataFrame, merge: Mapping[str, list[str]] | None, labels: Mapping[str, int]) -> pd.DataFrame:
    """Training rows relabelled to the merged classes (rows within one merged class dropped, row ids
    renumbered); `labels`: merged class -> +1 / -1 / 0."""
    if not merge:
        return df
    to = merged_name(merge)
    f = df["factual_class"].map(lambda c: to.get(c, c))
    t = df["alternative_class"].map(lambda c: to.get(c, c))
    keep = (f != t) | (df["factual_class"] == df["alternative_class"])  # identity rows stay identity rows
    out = df.assign(factual_class=f, alternative_class=t)[keep].reset_index(drop=True)
    out["label"] = out["factual_class"].map(labels).astype(df["label"].dtype)
    out["row_id"] = range(len(out))
    return out
