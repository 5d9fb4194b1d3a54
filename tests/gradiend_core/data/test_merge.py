"""Class merges (data.merge) and identity rows (data.identity_rows), as the reference offers them."""
import pytest

from gradiend_core.data.builtin import gender_texts
from gradiend_core.data.creation import DataConfig, create_training_data
from gradiend_core.errors import ConfigError

RAW = {"m_nom": ["he"], "m_acc": ["him"], "f_nom": ["she"], "f_acc": ["her"]}
MERGE = {"masculine": ["m_nom", "m_acc"], "feminine": ["f_nom", "f_acc"]}


def config(**kw) -> DataConfig:
    return DataConfig(classes=RAW, max_per_class=40, balance="none", **kw)


def test_merged_rows_change_the_merged_class_and_keep_the_raw_transition():
    cfg = config(merge=MERGE)
    assert cfg.merged_class_map() == {"masculine": ["he", "him"], "feminine": ["she", "her"]}
    assert cfg.labels() == {"masculine": 1, "feminine": -1}
    df = create_training_data(gender_texts(), cfg)
    assert set(df["factual_class"]) == set(df["alternative_class"]) == {"masculine", "feminine"}
    assert (df["factual_class"] != df["alternative_class"]).all()  # m_nom -> m_acc rows are dropped
    raw = df["transition"].str.split("->", expand=True)
    to = {r: m for m, rs in MERGE.items() for r in rs}
    assert (raw[0].map(to) == df["factual_class"]).all() and (raw[1].map(to) == df["alternative_class"]).all()
    assert set(df["transition"]) == {f"{a}->{b}" for a in RAW for b in RAW if to[a] != to[b]}
    assert (df["label"] == df["factual_class"].map({"masculine": 1, "feminine": -1})).all()
    assert list(df["row_id"]) == list(range(len(df)))
    unmerged = create_training_data(gender_texts(), config())
    same = unmerged[unmerged["transition"].isin(df["transition"])]
    assert list(same["masked"]) == list(df["masked"]) and list(same["alternative"]) == list(df["alternative"])


def test_identity_rows_draw_the_alternative_from_the_own_class():
    plain = create_training_data(gender_texts(), config())
    df = create_training_data(gender_texts(), config(identity_rows=True))
    ident = df[df["factual_class"] == df["alternative_class"]]
    assert len(ident) == plain.drop_duplicates(["text", "factual_class"]).shape[0]  # one per sentence and class
    for c, words in RAW.items():
        assert set(ident.loc[ident["factual_class"] == c, "alternative"].str.lower()) <= set(words)
    assert len(df) == len(plain) + len(ident)


@pytest.mark.parametrize("merge, needle", [
    ({"masculine": ["m_nom", "m_xx"]}, "'m_xx' is not a data class"),
    ({"a": ["m_nom"], "b": ["m_nom"]}, "class 'm_nom' is in 'a' and 'b'"),
    ({"f_nom": ["m_nom", "m_acc"]}, "'f_nom' is also a class that is not merged"),
    ({"all": ["m_nom", "m_acc", "f_nom", "f_acc"]}, "fewer than 2 classes"),
])
def test_bad_merges_say_what_to_fix(merge, needle):
    with pytest.raises(ConfigError, match=needle):
        config(merge=merge).validate()


def test_the_pair_names_merged_classes():
    from gradiend_core.experiment import load_experiment

    sets = ["data.builtin=gender", f"data.classes={RAW}".replace("'", ""), f"data.merge={MERGE}".replace("'", "")]
    cfg = load_experiment(None, sets)
    assert cfg.pair() == ("masculine", "feminine")
    with pytest.raises(ConfigError, match="train.pair: 'm_nom' is not a data class"):
        load_experiment(None, sets + ["train.pair=[m_nom, f_nom]"])
