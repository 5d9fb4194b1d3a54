"""gradiend_core.compare: every measure against a direct computation in plain Python (no numpy/scipy in
the expected values), on hand-built GRADIENDs over a tiny BERT, pruned to different kept dims."""
import json
import math

import pytest
import torch

from gradiend_core.compare import (CompareConfig, anchor_aligned_matrix, as_matrix, common_layout,
                                   compare_gradiends, component_of, cross_encoding_matrix, encoding_table,
                                   grouped_similarity, layer_of, pairwise_encoding_matrix, read_comparison,
                                   similarity_matrix, topk_sets, topk_weights, venn_regions, write_comparison)
from gradiend_core.errors import ConfigError, ModelError
from gradiend_core.gradiend import BaseIdentity, Gradiend
from gradiend_core.model import GradiendModel
from gradiend_core.param_map import select_parameters
from gradiend_core.testing import tiny_clm, tiny_mlm


@pytest.fixture(scope="module")
def bert():
    model, _ = tiny_mlm(seed=0)
    return model, select_parameters(model)


@pytest.fixture(scope="module")
def gpt2_names():
    model, _ = tiny_clm(seed=0)
    return select_parameters(model).names


def _gradiend(pmap, seed, keep=None, directions=None):
    g = Gradiend(GradiendModel(pmap.input_dim, seed=seed), pmap, directions=directions or {"A": 1, "B": -1})
    return g if keep is None else g.prune(keep_local=torch.as_tensor(keep))


def _cell(table, r, c):
    row = table[(table["row_id"] == r) & (table["col_id"] == c)]
    assert len(row) == 1
    return row.iloc[0]


# ------------------------------------------------------------------ direct formulas (plain Python)
def _part_values(g, part):
    """{global index: value} of the part; the first tensor (word embeddings) holds the kept dims here,
    so local index -> global index is keep[local]."""
    W_e, W_d, b = g.model.encoder.weight[0], g.model.decoder.weight[:, 0], g.model.decoder.bias
    vals = {"encoder-weight": W_e, "decoder-weight": W_d, "decoder-bias": b, "decoder-sum": W_d + b}[part]
    glob = g.param_map.local_to_global().tolist()
    return {k: float(v) for k, v in zip(glob, vals.tolist())}


def _cos(a, b):
    dot = sum(a[k] * b[k] for k in a if k in b)
    return dot / (math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values())))


def _ranks(xs):
    return [sum(y < x for y in xs) + (sum(y == x for y in xs) + 1) / 2 for x in xs]


def _spearman(a, b):
    union = sorted(set(a) | set(b))
    x, y = _ranks([a.get(k, 0.0) for k in union]), _ranks([b.get(k, 0.0) for k in union])
    mx, my = sum(x) / len(x), sum(y) / len(y)
    num = sum((p - mx) * (q - my) for p, q in zip(x, y))
    return num / math.sqrt(sum((p - mx) ** 2 for p in x) * sum((q - my) ** 2 for q in y))


# ------------------------------------------------------------------ similarity measures
@pytest.mark.parametrize("part", ["encoder-weight", "decoder-weight", "decoder-bias", "decoder-sum"])
def test_cosine_and_spearman_on_differently_pruned_gradiends(bert, part):
    _, pmap = bert
    assert pmap.specs[0].numel > 15  # kept dims {0..9} and {5..14} lie in the first tensor: global = local
    gs = {"a": _gradiend(pmap, 1, keep=range(0, 10)), "b": _gradiend(pmap, 2, keep=range(5, 15))}
    a, b = _part_values(gs["a"], part), _part_values(gs["b"], part)
    assert sorted(a) == list(range(10)) and sorted(b) == list(range(5, 15))
    expected = {"cosine_signed": _cos(a, b), "cosine": abs(_cos(a, b)),
                "spearman_signed": _spearman(a, b), "spearman": abs(_spearman(a, b))}
    for name, want in expected.items():
        table = similarity_matrix(gs, name, part=part)
        for r, c in (("a", "b"), ("b", "a")):
            cell = _cell(table, r, c)
            assert cell["value"] == pytest.approx(want, rel=1e-9, abs=1e-12), name
            assert (cell["n_row"], cell["n_col"], cell["n_shared"]) == (10, 10, 5)
        assert _cell(table, "a", "a")["value"] == pytest.approx(1.0)
        assert set(table["part"]) == {part} and set(table["group"]) == {"all"}


def test_signed_and_absolute_measures_on_an_inverted_twin(bert):
    _, pmap = bert
    g = _gradiend(pmap, 3, keep=range(0, 40))
    gs = {"g": g, "inv": g.invert()}
    for name, want in (("cosine_signed", -1.0), ("cosine", 1.0), ("spearman_signed", -1.0), ("spearman", 1.0)):
        assert _cell(similarity_matrix(gs, name), "g", "inv")["value"] == pytest.approx(want), name


def test_cosine_restricted_to_topk_is_zero_filled_over_the_union(bert):
    _, pmap = bert
    gs = {"a": _gradiend(pmap, 1, keep=range(0, 10)), "b": _gradiend(pmap, 2, keep=range(5, 15))}
    table = similarity_matrix(gs, "cosine_signed", part="decoder-weight", topk=4)
    a_all, b_all = _part_values(gs["a"], "decoder-weight"), _part_values(gs["b"], "decoder-weight")
    top = lambda d: {k: d[k] for k in sorted(d, key=lambda k: (-abs(d[k]), k))[:4]}  # noqa: E731
    assert _cell(table, "a", "b")["value"] == pytest.approx(_cos(top(a_all), top(b_all)), abs=1e-12)
    assert _cell(table, "a", "b")["n_row"] == 4


def _set_decoder(g, values):
    with torch.no_grad():
        g.model.decoder.weight.copy_(torch.tensor(values, dtype=torch.float32).reshape(-1, 1))
        g.model.decoder.bias.zero_()
    return g


@pytest.fixture
def known_topk(bert):
    """a keeps global 0..9 with top-4 {6,7,8,9}; b keeps 5..14 with top-4 {5,6,7,14}; c keeps 0..9, top-4 {0..3}."""
    _, pmap = bert
    a = _set_decoder(_gradiend(pmap, 1, keep=range(0, 10)), [1, 1, 1, 1, 1, 1, 5, 6, 7, 8])
    b = _set_decoder(_gradiend(pmap, 2, keep=range(5, 15)), [9, 4, 3, .5, .5, .5, .5, .5, .5, -10])
    c = _set_decoder(_gradiend(pmap, 3, keep=range(0, 10)), [4, 3, 2, 2, 1, 1, 1, 1, 1, 1])
    return {"a": a, "b": b, "c": c}


def test_topk_overlap_counts_and_fractions(known_topk):
    t = similarity_matrix(known_topk, "topk_overlap", topk=4, value="intersection")
    assert set(t["part"]) == {"decoder-weight"}  # the reference's default part for topk_overlap
    assert _cell(t, "a", "b")["value"] == 2 and _cell(t, "a", "a")["value"] == 4
    assert _cell(t, "a", "c")["value"] == 0 and _cell(t, "b", "c")["value"] == 0
    frac = similarity_matrix(known_topk, "topk_overlap", topk=0.4)  # ceil(0.4 * 10) = 4 dims each
    assert _cell(frac, "a", "b")["value"] == pytest.approx(0.5) and _cell(frac, "b", "a")["value"] == pytest.approx(0.5)
    small = similarity_matrix(known_topk, "topk_overlap", topk=2)  # a: {8, 9}, b: {14, 5}
    assert _cell(small, "a", "b")["value"] == 0
    # sizes differ: a's top-8 {0,1,2,3,6,7,8,9} (ties: lowest index), d keeps 5 dims {5..9} -> 4 / min(8, 5)
    d = known_topk["a"].prune(keep_local=torch.arange(5, 10))
    uneven = similarity_matrix({"a": known_topk["a"], "d": d}, "topk_overlap", topk=8)
    assert (_cell(uneven, "a", "d")["n_row"], _cell(uneven, "a", "d")["n_col"]) == (8, 5)
    assert _cell(uneven, "a", "d")["value"] == pytest.approx(0.8)
    with pytest.raises(ConfigError, match="needs a top-k"):
        similarity_matrix(known_topk, "topk_overlap")


def test_mass_overlap(known_topk):
    t = similarity_matrix(known_topk, "mass_overlap", part="decoder-weight", topk=4)
    fa = math.sqrt(5 ** 2 + 6 ** 2) / math.sqrt(5 ** 2 + 6 ** 2 + 7 ** 2 + 8 ** 2)  # a's mass on {6, 7}
    fb = math.sqrt(4 ** 2 + 3 ** 2) / math.sqrt(9 ** 2 + 4 ** 2 + 3 ** 2 + 10 ** 2)
    assert _cell(t, "a", "b")["value"] == pytest.approx(0.5 * (fa + fb), rel=1e-6)
    assert _cell(t, "a", "a")["value"] == pytest.approx(1.0) and _cell(t, "a", "c")["value"] == 0
    assert set(similarity_matrix(known_topk, "mass_overlap", topk=4)["part"]) == {"encoder-weight"}


def test_topk_weights_sets_and_venn_regions(known_topk):
    table = topk_weights(known_topk, "decoder-weight", 4)
    a = table[table["gradiend_id"] == "a"]
    assert list(a["global_index"]) == [9, 8, 7, 6] and list(a["rank"]) == [0, 1, 2, 3]
    assert list(a["importance"]) == [8, 7, 6, 5] and set(a["param"]) == {"bert.embeddings.word_embeddings.weight"}
    b = table[table["gradiend_id"] == "b"]
    assert list(b["global_index"]) == [14, 5, 6, 7] and list(b["flat_index"]) == [14, 5, 6, 7]
    sets = topk_sets(table)
    assert [list(s) for s in sets.values()] == [[6, 7, 8, 9], [5, 6, 7, 14], [0, 1, 2, 3]]
    regions = venn_regions(sets)
    assert regions == {("a",): 2, ("b",): 2, ("c",): 4, ("a", "b"): 2, ("a", "c"): 0, ("b", "c"): 0,
                       ("a", "b", "c"): 0}
    assert venn_regions({"a": sets["a"], "b": sets["b"]}) == {("a",): 2, ("b",): 2, ("a", "b"): 2}
    with pytest.raises(ConfigError):
        venn_regions({"a": sets["a"]})


def test_maps_over_different_tensors_align_on_the_base_model(bert):
    model, full = bert
    sub = select_parameters(model, include=["bert.encoder.layer.0.*"])
    name = sub.names[0]
    lo = full.base_offsets[name]
    g_full = _gradiend(full, 4).prune(keep_local=torch.arange(lo, lo + sub.input_dim))  # the same entries
    g_sub = Gradiend(GradiendModel(sub.input_dim, seed=5), sub, directions={"A": 1, "B": -1})
    with torch.no_grad():
        g_sub.model.encoder.weight.copy_(g_full.model.encoder.weight)
    layout = common_layout({"full": g_full, "sub": g_sub})
    assert layout.offsets[layout.names.index(name)] == lo
    cell = _cell(similarity_matrix({"full": g_full, "sub": g_sub}, "cosine_signed"), "full", "sub")
    assert cell["value"] == pytest.approx(1.0) and cell["n_shared"] == sub.input_dim


def test_gradiends_of_different_base_models_are_refused(bert):
    _, pmap = bert
    a, b = _gradiend(pmap, 1), _gradiend(pmap, 2)
    a.base, b.base = BaseIdentity("m", "d1"), BaseIdentity("m", "d2")
    with pytest.raises(ModelError, match="different base models"):
        similarity_matrix({"a": a, "b": b})
    with pytest.raises(ConfigError, match="at least 2"):
        similarity_matrix({"a": a})


# ------------------------------------------------------------------ groups
def test_layer_and_component_of_bert_gpt2_t5_bart(bert, gpt2_names):
    cases = {
        "bert.embeddings.word_embeddings.weight": ("embeddings", "embeddings"),
        "bert.embeddings.LayerNorm.bias": ("embeddings", "norm"),
        "bert.encoder.layer.1.attention.self.query.weight": ("layer 1", "attention"),
        "bert.encoder.layer.0.attention.output.dense.weight": ("layer 0", "attention"),
        "bert.encoder.layer.0.attention.output.LayerNorm.weight": ("layer 0", "norm"),
        "bert.encoder.layer.0.intermediate.dense.weight": ("layer 0", "mlp"),
        "bert.encoder.layer.0.output.dense.bias": ("layer 0", "mlp"),
        "bert.pooler.dense.weight": ("other", "other"),
        "transformer.wpe.weight": ("embeddings", "embeddings"),
        "transformer.h.1.attn.c_proj.weight": ("layer 1", "attention"),
        "transformer.h.1.mlp.c_proj.weight": ("layer 1", "mlp"),
        "transformer.h.0.ln_2.bias": ("layer 0", "norm"),
        "transformer.ln_f.weight": ("other", "norm"),
        "shared.weight": ("embeddings", "embeddings"),
        "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight": ("layer 1", "attention"),
        "encoder.block.0.layer.1.DenseReluDense.wi.weight": ("layer 0", "mlp"),
        "decoder.block.1.layer.1.EncDecAttention.k.weight": ("decoder layer 1", "attention"),
        "decoder.block.0.layer.2.layer_norm.weight": ("decoder layer 0", "norm"),
        "encoder.final_layer_norm.weight": ("other", "norm"),
        "model.encoder.embed_positions.weight": ("embeddings", "embeddings"),
        "model.encoder.layernorm_embedding.bias": ("embeddings", "norm"),
        "model.decoder.layers.1.encoder_attn_layer_norm.weight": ("decoder layer 1", "norm"),
        "model.decoder.layers.0.encoder_attn.q_proj.weight": ("decoder layer 0", "attention"),
        "model.encoder.layers.1.fc2.bias": ("layer 1", "mlp"),
    }
    for name, (layer, component) in cases.items():
        assert (layer_of(name), component_of(name)) == (layer, component), name
    _, pmap = bert
    for names in (pmap.names, gpt2_names):  # every tensor of the tiny models is classified, none is "other"
        assert {component_of(n) for n in names} == {"embeddings", "attention", "mlp", "norm"}
    assert sorted({layer_of(n) for n in gpt2_names}) == ["embeddings", "layer 0", "layer 1", "other"]


def test_grouped_similarity_by_layer_and_component(bert):
    _, pmap = bert
    gs = {"a": _gradiend(pmap, 1), "b": _gradiend(pmap, 2)}
    by_layer = grouped_similarity(gs, "layer", "cosine_signed")
    assert list(dict.fromkeys(by_layer["group"])) == ["embeddings", "layer 0", "layer 1"]
    layer0 = [s for s in pmap.specs if ".layer.0." in s.name]
    cell = _cell(by_layer[by_layer["group"] == "layer 0"], "a", "b")
    assert cell["n_row"] == sum(s.numel for s in layer0) == cell["n_shared"]
    # the layer-0 cell = the measure on the GRADIENDs pruned to the layer-0 dims
    lo = pmap.base_offsets[layer0[0].name]
    keep = torch.arange(lo, lo + cell["n_row"])
    pruned = {k: g.prune(keep_local=keep) for k, g in gs.items()}
    assert cell["value"] == pytest.approx(_cell(similarity_matrix(pruned, "cosine_signed"), "a", "b")["value"])
    by_param = grouped_similarity(gs, "param", "cosine_signed")
    assert list(dict.fromkeys(by_param["group"])) == pmap.names  # the map's order
    custom = grouped_similarity(gs, lambda n: "emb" if "embeddings" in n else "rest", "topk_overlap", topk=0.5)
    assert set(custom["group_by"]) == {"custom"} and list(dict.fromkeys(custom["group"])) == ["emb", "rest"]
    emb_dims = sum(s.numel for s in pmap.specs if "embeddings" in s.name)
    assert _cell(custom[custom["group"] == "emb"], "a", "b")["n_row"] == math.ceil(0.5 * emb_dims)
    by_comp = grouped_similarity(gs, "component", "cosine_signed")
    assert list(dict.fromkeys(by_comp["group"])) == ["embeddings", "attention", "mlp", "norm"]
    norm_dims = {i for s in pmap.specs if component_of(s.name) == "norm"
                 for i in range(pmap.base_offsets[s.name], pmap.base_offsets[s.name] + s.numel)}
    norm = {k: {i: v for i, v in _part_values(g, "encoder-weight").items() if i in norm_dims} for k, g in gs.items()}
    cell = _cell(by_comp[by_comp["group"] == "norm"], "a", "b")
    assert cell["n_row"] == len(norm["a"]) == 64 + 2 * 2 * 64
    assert cell["value"] == pytest.approx(_cos(norm["a"], norm["b"]), rel=1e-9)


# ------------------------------------------------------------------ cross-encoding
DIRECTIONS = {"g1": {"A": 1, "B": -1}, "g2": {"B": 1, "C": -1}}
ENCODED = [("g1", "A", 0.8), ("g1", "A", 1.0), ("g1", "B", -1.0), ("g1", "B", -0.6), ("g1", "C", 0.2),
           ("g2", "A", 0.1), ("g2", "A", 0.3), ("g2", "B", 0.5), ("g2", "C", -0.4), ("g2", "C", -0.6)]


def _encodings():
    import pandas as pd

    return pd.DataFrame(ENCODED, columns=["gradiend_id", "class", "encoded"])


def _values(df, keys, column):
    return {tuple(r[k] for k in keys): r[column] for _, r in df.iterrows()}


def test_cross_encoding_matrix_and_its_diagonal_normalisation():
    cross = cross_encoding_matrix(_encodings(), DIRECTIONS)
    mean = _values(cross, ["gradiend_id", "class"], "mean")
    want = {("g1", "A"): .9, ("g1", "B"): -.8, ("g1", "C"): .2, ("g2", "A"): .2, ("g2", "B"): .5, ("g2", "C"): -.5}
    assert mean == pytest.approx(want)
    assert _values(cross, ["gradiend_id", "class"], "n")[("g1", "A")] == 2
    norm = _values(cross, ["gradiend_id", "class"], "normalized")
    assert norm == pytest.approx({("g1", "A"): 1, ("g1", "B"): -.8 / .9, ("g1", "C"): .2 / .9,
                                  ("g2", "A"): .4, ("g2", "B"): 1, ("g2", "C"): -1})
    pair = pairwise_encoding_matrix(cross)
    assert _values(pair, ["row_id", "col_id"], "value") == pytest.approx(
        {("g1", "g1"): .9, ("g1", "g2"): -.8, ("g2", "g1"): .2, ("g2", "g2"): .5})
    assert _values(pair, ["row_id", "col_id"], "normalized")[("g2", "g1")] == pytest.approx(.4)


def test_anchor_aligned_matrix():
    aa = anchor_aligned_matrix(_encodings(), DIRECTIONS)
    assert list(dict.fromkeys(aa["anchor"])) == ["A", "B", "C"]
    mean = _values(aa, ["anchor", "class"], "mean")
    # row B: g1 (direction -1, negated) and g2 (direction +1) averaged
    assert mean == pytest.approx({("A", "A"): .9, ("A", "B"): -.8, ("A", "C"): .2,
                                  ("B", "A"): -.35, ("B", "B"): .65, ("B", "C"): -.35,
                                  ("C", "A"): -.2, ("C", "B"): -.5, ("C", "C"): .5})
    assert _values(aa, ["anchor", "class"], "n_gradiends")[("B", "A")] == 2
    assert _values(aa, ["anchor", "class"], "n_rows")[("B", "C")] == 3
    norm = _values(aa, ["anchor", "class"], "normalized")
    assert [norm[("C", c)] for c in "ABC"] == pytest.approx([-.4, -1, 1])
    assert norm[("B", "A")] == pytest.approx(-.35 / .65)


def test_encoding_table_from_evaluate_encoder_tables():
    import pandas as pd

    enc = pd.DataFrame({"encoded": [.5, -.5, .1, .9, .3], "source_class": ["A", "B", "C", "neutral", "A"],
                        "type": ["training", "training", "other_class", "neutral_dataset", "training"],
                        "split": ["test", "test", "test", "test", "train"]})
    t = encoding_table({"g1": enc, "g2": enc.assign(encoded=enc["encoded"] * 2)})
    assert list(t.columns) == ["gradiend_id", "class", "encoded"]
    assert list(zip(t["gradiend_id"], t["class"], t["encoded"])) == [
        ("g1", "A", .5), ("g1", "B", -.5), ("g1", "C", .1), ("g2", "A", 1.0), ("g2", "B", -1.0), ("g2", "C", .2)]
    assert len(encoding_table({"g1": enc}, split=None)) == 4


# ------------------------------------------------------------------ everything, stored
def test_compare_gradiends_tables_summary_and_files(known_topk, tmp_path):
    gs = {k: g for k, g in known_topk.items() if k != "c"}
    gs["b"].directions = {"B": 1, "C": -1}
    enc = _encodings().replace({"gradiend_id": {"g1": "a", "g2": "b"}})
    seen = []
    c = compare_gradiends(gs, CompareConfig(topk=4, group_by=("component",)), encodings=enc,
                          progress=lambda f, msg: seen.append((f, msg)))
    assert len(seen) == 12 and seen[-1] == (1.0, "similarity mass_overlap by component")  # 6 measures x 2
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and seen[0][1] == "similarity cosine"
    sim = c.tables["similarity"]
    assert set(sim["measure"]) == {"cosine", "cosine_signed", "spearman", "spearman_signed", "topk_overlap",
                                   "mass_overlap"}
    assert set(sim["group_by"]) == {"none", "component"}
    ov = sim[(sim["measure"] == "topk_overlap") & (sim["group_by"] == "none")]
    assert _cell(ov, "a", "b")["value"] == pytest.approx(0.5)
    assert set(c.tables["topk"]["part"]) == {"encoder-weight", "decoder-weight", "decoder-bias", "decoder-sum"}
    assert c.summary["similarity"]["topk_overlap"]["a"]["b"] == pytest.approx(0.5)
    assert c.summary["cross_encoding_diagonal"] == pytest.approx({"a": .9, "b": .5})
    paths = write_comparison(c, tmp_path / "cmp")
    assert json.loads(paths["summary"].read_text()) == json.loads(json.dumps(c.summary))
    back = read_comparison(tmp_path / "cmp")
    assert set(back) == {"similarity", "topk", "cross_encoding", "pairwise_encoding", "anchor_aligned"}
    assert as_matrix(ov).equals(as_matrix(back["similarity"].query("measure == 'topk_overlap' and group_by == 'none'")))
