import copy
import json
import math

import pandas as pd
import pytest
import torch

from gradiend_core.decoder_eval import (DEFAULT_LEARNING_RATES, DecoderGridConfig, base_record, decoder_rows,
                                        evaluate_decoder_grid, evaluate_prepared, grid_result, prepare_grid,
                                        prepare_probability_rows, prob_column, score_cells)
from gradiend_core.errors import ConfigError, DataError, ModelError
from gradiend_core.gradiend import Gradiend
from gradiend_core.grid_stats import change_column
from gradiend_core.lms import lms_clm, lms_mlm
from gradiend_core.model import GradiendModel
from gradiend_core.param_map import select_parameters
from gradiend_core.selection import get_policy
from gradiend_core.testing import tiny_clm, tiny_mlm

ROWS = pd.DataFrame({
    "masked": ["the doctor said that [MASK] was late .", "yesterday [MASK] went to the park .",
               "the children said [MASK] were happy .", "my friends knew that [MASK] would come ."],
    "factual_class": ["3SG", "3SG", "3PL", "3PL"],
    "split": ["test"] * 4,
})
NEUTRAL = ["the dog went to the park today .", "a man saw the cat at night .", "we often go to school by car ."]
# "zed" is not in the tiny vocabulary: WordPiece splits it into 3 pieces (multi-mask path).
WORDS = {"3SG": ["he", "she", "zed"], "3PL": ["they"]}
LRS = [0.5, 20.0]
CFG = DecoderGridConfig(learning_rates=LRS, lms="accuracy")  # the reference's LMS, to compare with lms_mlm


def _gradiend(model, seed=0):
    pm = select_parameters(model)
    g = Gradiend(GradiendModel(pm.input_dim, seed=seed), pm, directions={"3SG": 1, "3PL": -1})
    with torch.no_grad():  # make the rewrite large enough to move probabilities visibly
        g.model.decoder.weight.mul_(20.0)
    return g


@pytest.fixture(scope="module")
def mlm_grid():
    model, tok = tiny_mlm(seed=1)
    g = _gradiend(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    res = evaluate_decoder_grid(model, tok, "mlm", g, ROWS, NEUTRAL, WORDS, CFG,
                                progress=lambda i, n: calls.append((i, n)))
    return model, tok, g, res, before, calls


def _rewrite_by_hand(model, g, lr, ff):
    """theta + lr * (W_d ff + b_d) on a deep copy, walking the (all-entries) map in order."""
    new = copy.deepcopy(model)
    delta = (g.model.decoder.weight[:, 0] * ff + g.model.decoder.bias).detach()  # (P,)
    params, off = dict(new.named_parameters()), 0
    with torch.no_grad():
        for name in g.param_map.names:
            p = params[name]
            p.view(-1).add_(lr * delta[off: off + p.numel()])
            off += p.numel()
    assert off == delta.numel()
    return new


def _mlm_probs_direct(model, tok, masked):
    """P(class) for one row straight from the HF model (k-piece words: k masks, product of pieces)."""
    out = {}
    for cls, words in WORDS.items():
        total = 0.0
        for w in words:
            ids = tok(w, add_special_tokens=False)["input_ids"]
            text = masked.replace("[MASK]", " ".join(["[MASK]"] * len(ids)), 1)
            enc = tok(text, return_tensors="pt")
            with torch.no_grad():
                logits = model(**enc).logits[0]
            pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero()[:, 0]
            p = 1.0
            for j, tid in enumerate(ids):
                p *= float(logits[pos[j]].softmax(-1)[tid])
            total += p
        out[cls] = total
    return out


def _direct_table_row(model, tok):
    row = {}
    for d in ("3SG", "3PL"):
        rows = ROWS[ROWS["factual_class"] == d]["masked"]
        per = [_mlm_probs_direct(model, tok, m) for m in rows]
        for c in WORDS:
            row[prob_column(c, d)] = sum(p[c] for p in per) / len(per)
    return row


def test_multi_piece_word_really_is_multi_piece(mlm_grid):
    _, tok, *_ = mlm_grid
    assert len(tok("zed", add_special_tokens=False)["input_ids"]) == 3


def test_one_cell_matches_direct_computation_on_hand_rewritten_copy(mlm_grid):
    model, tok, g, res, *_ = mlm_grid
    ff, lr = g.feature_factor("3SG"), 20.0
    rewritten = _rewrite_by_hand(model, g, lr, ff)
    cell = res.cell(ff, lr)
    for col, val in _direct_table_row(rewritten, tok).items():
        assert cell[col] == pytest.approx(val, rel=1e-4, abs=1e-9), col
    assert cell["lms"] == pytest.approx(lms_mlm(rewritten, tok, NEUTRAL, seed=CFG.seed)["lms"])
    # The rewrite did change the model's predictions (otherwise the comparison proves nothing).
    assert abs(cell[prob_column("3SG", "3PL")] - res.base_row()[prob_column("3SG", "3PL")]) > 1e-6


def test_base_cell_matches_unmodified_model(mlm_grid):
    model, tok, g, res, before, _ = mlm_grid
    fresh, _ = tiny_mlm(seed=1)  # an untouched copy of the same base model
    base = res.base_row()
    assert base["is_base"] and base["learning_rate"] == 0.0
    for col, val in _direct_table_row(fresh, tok).items():
        assert base[col] == pytest.approx(val, rel=1e-4, abs=1e-9), col
    assert res.base_lms == base["lms"] == pytest.approx(lms_mlm(fresh, tok, NEUTRAL, seed=CFG.seed)["lms"])


def test_model_is_bit_identical_after_the_grid(mlm_grid):
    model, _, _, res, before, _ = mlm_grid
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(res.table) == 1 + 2 * len(LRS)


def test_table_layout_progress_and_cell_order(mlm_grid):
    _, _, g, res, _, calls = mlm_grid
    n = 1 + 2 * len(LRS)
    assert calls == [(i, n) for i in range(1, n + 1)]
    cells = list(zip(res.table["feature_factor"], res.table["learning_rate"]))[1:]
    assert cells == sorted((ff, lr) for ff in (-1.0, 1.0) for lr in LRS)
    for c in ("3SG", "3PL"):
        for d in ("3SG", "3PL"):
            assert prob_column(c, d) in res.table.columns
    assert res.feature_factors == {"3SG": g.feature_factor("3SG"), "3PL": g.feature_factor("3PL")}
    assert res.rows_per_class == {"3SG": 2, "3PL": 2}
    js = json.loads(json.dumps(res.to_json()))  # plain JSON types only
    assert len(js["table"]) == n and set(js["summary"]) == {"3SG", "3SG_weaken", "3PL", "3PL_weaken"}


def test_cells_scored_in_parts_on_fresh_models_equal_the_one_task_table(mlm_grid):
    """What a fanned-out grid does: each part gets its own freshly loaded model and rebuilt inputs and
    scores a subset of the cells (here in reverse part order); merged in canonical order, every number
    equals the one-task table's exactly, because a cell depends on nothing but its (ff, lr)."""
    _, tok, g, res, _, _ = mlm_grid
    grid = prepare_grid(tok, "mlm", g, ROWS, NEUTRAL, WORDS, CFG)
    assert grid.cells == list(zip(res.table["feature_factor"], res.table["learning_rate"]))[1:]
    by_part = {}
    for idx in ([3], [1, 2], [0]):
        part_grid = prepare_grid(tok, "mlm", g, ROWS, NEUTRAL, WORDS, CFG)
        by_part[idx[0]] = score_cells(tiny_mlm(seed=1)[0], g, part_grid, [grid.cells[i] for i in idx])
    records = [base_record(tiny_mlm(seed=1)[0], grid)] + [r for i in sorted(by_part) for r in by_part[i]]
    merged = grid_result(records, grid.layout(), grid.cfg)
    pd.testing.assert_frame_equal(merged.table, res.table, check_exact=True)
    assert merged.to_json() == res.to_json()


def test_summary_orientation_and_policy_choice(mlm_grid):
    _, _, g, res, _, _ = mlm_grid
    t = res.table[~res.table["is_base"]]
    policy = get_policy("lms_threshold", ratio=CFG.lms_ratio)
    for cls, other in (("3SG", "3PL"), ("3PL", "3SG")):
        ff = g.feature_factor(cls)
        s = res.summary[cls]
        assert s["strengthen"] and s["feature_factor"] == ff
        sub = t[t["feature_factor"] == ff]
        cands = [{"feature_factor": r.feature_factor, "learning_rate": r.learning_rate, "lms": r.lms,
                  "metric": r[prob_column(cls, other)]} for _, r in sub.iterrows()]
        pick = policy.select(cands, res.base_lms)
        assert (s["learning_rate"], s["value"]) == (pick["learning_rate"], pick["metric"])
        assert s["base_value"] == res.base_row()[prob_column(cls, other)]
        w = res.summary[f"{cls}_weaken"]
        assert not w["strengthen"] and w["feature_factor"] == g.feature_factor(other)
        wcell = res.cell(w["feature_factor"], w["learning_rate"])
        assert w["value"] == pytest.approx(1.0 - wcell[prob_column(cls, cls)])


def test_clm_cell_matches_direct_next_token_probability():
    model, tok = tiny_clm(seed=2)
    g = _gradiend(model)
    words = {"3SG": ["he", "she"], "3PL": ["they"]}
    rows = ROWS.iloc[[0, 2]]
    res = evaluate_decoder_grid(model, tok, "clm", g, rows, NEUTRAL, words,
                                DecoderGridConfig(learning_rates=[20.0], feature_factors=[1.0], lms="accuracy"))
    prepared = prepare_probability_rows(tok, "clm", rows, words)
    assert prepared.candidates == {"3SG": ["he", "she"], "3PL": ["they"]}  # " He" is 3 pieces: not a variant
    rewritten = _rewrite_by_hand(model, g, 20.0, 1.0)
    cell = res.cell(1.0, 20.0)
    for _, r in rows.iterrows():
        prefix = r["masked"].split("[MASK]")[0].rstrip()
        enc = tok(prefix, return_tensors="pt")
        with torch.no_grad():
            probs = rewritten(**enc).logits[0, -1].softmax(-1)
        for c, ws in words.items():
            # " He"/" She"/" They" are not single tokens of the tiny BPE, so only the lower-case forms count.
            ids = {tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in ws}
            expect = float(sum(probs[i] for i in ids))
            assert cell[prob_column(c, r["factual_class"])] == pytest.approx(expect, rel=1e-4)
    assert cell["lms"] == pytest.approx(lms_clm(rewritten, tok, NEUTRAL)["lms"], rel=1e-6)
    assert "3PL" not in [k for k, v in res.summary.items() if v.get("id") != "base"]  # ff -1 not in this grid
    assert res.summary["3PL"]["id"] == "base"


def test_mask_less_tokenizer_fails_before_model_work():
    _, clm_tok = tiny_clm()

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"model touched: {name}")

    with pytest.raises(ModelError, match="mask token"):
        evaluate_decoder_grid(Untouchable(), clm_tok, "mlm", Untouchable(), ROWS, NEUTRAL, WORDS, CFG)


def test_row_cap_and_bad_inputs():
    model, tok = tiny_mlm(seed=1)
    prepared = prepare_probability_rows(tok, "mlm", ROWS, WORDS)
    assert prepared.n_rows == 4 and sorted(len(g.cand_ids[0]) for g in prepared.groups) == [1, 3]
    with pytest.raises(DataError, match="columns"):
        prepare_probability_rows(tok, "mlm", ROWS.drop(columns=["masked"]), WORDS)
    with pytest.raises(DataError, match="MASK"):
        prepare_probability_rows(tok, "mlm", ROWS.assign(masked="no mask here"), WORDS)
    with pytest.raises(ConfigError):
        prepare_probability_rows(tok, "mlm", ROWS, {})
    g = _gradiend(model)
    res = evaluate_decoder_grid(model, tok, "mlm", g, ROWS, NEUTRAL, WORDS,
                                DecoderGridConfig(learning_rates=[1.0], feature_factors=[1.0], max_rows_per_class=1))
    assert res.rows_per_class == {"3SG": 1, "3PL": 1}


def test_config_validation_and_defaults():
    assert DecoderGridConfig().lrs() == sorted(DEFAULT_LEARNING_RATES) and len(DEFAULT_LEARNING_RATES) == 16
    default = DecoderGridConfig()
    assert (default.policy, default.lms, default.lms_ratio) == ("lms_threshold", "log_prob", 0.99)
    for bad in (dict(policy="best"), dict(part="head"), dict(learning_rates=[]),
                dict(learning_rates=[float("nan")]), dict(batch_size=0), dict(lms_ratio=0),
                dict(max_rows_per_class=0), dict(lms="perplexity"), dict(alpha=0.0), dict(alpha=1.5),
                dict(ci_level=1.0), dict(bootstrap=0)):
        with pytest.raises(ConfigError):
            DecoderGridConfig(**bad).validate()


def test_decoder_rows_prefers_test_split():
    df = pd.concat([ROWS.assign(split="train"), ROWS.iloc[:1].assign(split="validation")])
    assert list(decoder_rows(df)["split"]) == ["validation"]
    assert len(decoder_rows(ROWS)) == 4


def test_decoder_rows_keep_the_pairs_transitions_once_per_sentence():
    """Three classes and identity rows: each 3SG/3PL test sentence once (its pair transition), no 1SG rows."""
    trans = [("3SG", "3PL"), ("3SG", "1SG"), ("3SG", "3SG"), ("3PL", "3SG"), ("3PL", "1SG"), ("1SG", "3SG")]
    df = pd.DataFrame({"masked": [f"s{i} [MASK] ." for i in range(len(trans))],
                       "factual_class": [f for f, _ in trans], "alternative_class": [t for _, t in trans],
                       "split": "test"})
    kept = decoder_rows(df, ("3SG", "3PL"))
    assert list(zip(kept["factual_class"], kept["alternative_class"])) == [("3SG", "3PL"), ("3PL", "3SG")]
    assert len(decoder_rows(df)) == len(trans)  # without a pair: every row


# ----------------------------------------------------------------------------- paired LMS and intervals

def _direct_mlm_position_scores(model, prepared, kind):
    """Every prepared masked position scored straight from the HF model's full forward (no grid code)."""
    out = []
    with torch.no_grad():
        for b in prepared.batches:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits  # (B, T, V)
            sel = b["labels"] != -100
            at, labels = logits[sel], b["labels"][sel]                                            # (M, V), (M,)
            if kind == "log_prob":
                out += at.log_softmax(-1).gather(1, labels[:, None])[:, 0].tolist()
            else:
                out += (at.argmax(-1) == labels).double().tolist()
    return out


@pytest.mark.parametrize("kind", ["accuracy", "log_prob"])
def test_paired_lms_of_a_cell_is_the_rewritten_model_scored_on_the_base_positions(kind):
    """The grid stores every row's score per LMS position; a cell's row equals the rewritten model scored
    directly on the SAME masked positions as the base model, and the LMS / difference follow from them."""
    model, tok = tiny_mlm(seed=1)
    g = _gradiend(model)
    cfg = DecoderGridConfig(learning_rates=LRS, lms=kind)
    grid = prepare_grid(tok, "mlm", g, ROWS, NEUTRAL, WORDS, cfg)
    res = evaluate_prepared(model, g, grid)
    ff, lr = g.feature_factor("3SG"), 20.0
    row = int(res.table.index[(res.table["feature_factor"] == ff) & (res.table["learning_rate"] == lr)][0])
    rewritten = _rewrite_by_hand(model, g, lr, ff)
    direct = _direct_mlm_position_scores(rewritten, grid.lms, kind)
    base = _direct_mlm_position_scores(tiny_mlm(seed=1)[0], grid.lms, kind)
    assert res.scores.lms_values[row].tolist() == pytest.approx(direct, abs=1e-5)
    assert res.scores.lms_values[0].tolist() == pytest.approx(base, abs=1e-5)
    to_lms = (lambda v: sum(v) / len(v)) if kind == "accuracy" else (lambda v: math.exp(sum(v) / len(v)))
    cell = res.table.iloc[row]
    assert cell["lms"] == pytest.approx(to_lms(direct), rel=1e-5)
    assert cell["lms_diff"] == pytest.approx(to_lms(direct) - to_lms(base), rel=1e-5, abs=1e-9)
    assert cell["lms_diff_lo"] <= cell["lms_diff"] <= cell["lms_diff_hi"]
    assert res.table.iloc[0][["lms_diff", "lms_diff_lo", "lms_diff_hi", "lms_p"]].tolist() == [0.0, 0.0, 0.0, 1.0]
    if kind == "accuracy":
        assert cell["lms"] == pytest.approx(lms_mlm(rewritten, tok, NEUTRAL, seed=CFG.seed)["lms"])
    if kind == "log_prob":  # the rewrite moved the scores (the random tiny model's accuracy stays 0)
        assert all(abs(a - b) > 1e-6 for a, b in zip(direct, base))


def test_class_probability_change_and_its_interval_per_cell(mlm_grid):
    _, _, g, res, _, _ = mlm_grid
    base = res.base_row()
    for _, cell in res.table.iterrows():
        for c in ("3SG", "3PL"):
            for d in ("3SG", "3PL"):
                name = change_column(c, d)
                assert cell[name] == pytest.approx(cell[prob_column(c, d)] - base[prob_column(c, d)], abs=1e-12)
                assert cell[f"{name}_lo"] - 1e-12 <= cell[name] <= cell[f"{name}_hi"] + 1e-12
    s = res.summary["3SG"]
    assert s["change"] == pytest.approx(s["value"] - s["base_value"], abs=1e-12)
    assert s["change_lo"] <= s["change"] <= s["change_hi"] and s["n_rows"] == 2
    w = res.summary["3SG_weaken"]
    assert w["change"] == pytest.approx(w["value"] - w["base_value"], abs=1e-12)


def test_the_intervals_are_seeded_bytes():
    model, tok = tiny_mlm(seed=1)
    g = _gradiend(model)
    a = evaluate_decoder_grid(model, tok, "mlm", g, ROWS, NEUTRAL, WORDS, CFG)
    b = evaluate_decoder_grid(model, tok, "mlm", g, ROWS, NEUTRAL, WORDS, CFG)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
