"""Catalogue of user mistakes: each is answered by `gradiend-flow run` before any stage runs, with exit
code 2, one stderr line that says what to fix, and a store without any stage output."""
from pathlib import Path

import pytest
import yaml

from flows.cli import main
from gradiend_core.store.marker import MARKER
from gradiend_core.testing import tiny_experiment


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny masked LM, variants of it that are broken in one way each, and a few corpus files."""
    from transformers import BertModel

    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.testing import save_tiny, tiny_clm, tiny_mlm, tiny_t5

    d = tmp_path_factory.mktemp("bad-inputs")
    model, tok = tiny_mlm(seed=0, hidden=32, layers=2, words=builtin_vocabulary())
    save_tiny(model, tok, d / "model")
    save_tiny(BertModel(model.config), tok, d / "no-head")  # backbone only: no masked-LM head
    save_tiny(*tiny_clm(seed=0, hidden=32, layers=2, words=builtin_vocabulary()), d / "gpt2")  # decoder-only
    save_tiny(*tiny_t5(words=builtin_vocabulary()), d / "t5")
    model.save_pretrained(d / "no-tokenizer")
    (d / "empty-dir").mkdir()
    (d / "empty.txt").write_text("\n\n")
    (d / "latin1.txt").write_bytes("he said the café was closed .\n".encode("latin-1"))
    (d / "only-he.txt").write_text("".join(f"he walked to the shop number {i} .\n" for i in range(40)))
    (d / "few.txt").write_text("he sat .\nthey sat .\n")
    (d / "config.yaml").write_text(yaml.safe_dump(tiny_experiment(d / "model")))
    (d / "file-not-dir").write_text("x")
    write_tables(d)
    return d


def write_tables(d: Path) -> None:
    """Labelled tables (data.table): a good one and variants broken in one way each."""
    import pandas as pd

    rows = [{"masked": f"{m} number {i} .", "factual": w, "factual_class": c,
             "split": "train" if i < 8 else ("val" if i == 8 else "test")}
            for i in range(10) for m, w, c in (("[MASK] walked to the shop", "he", "3SG"),
                                               ("then [MASK] sat down", "they", "3PL"))]
    good = pd.DataFrame(rows)
    good.to_csv(d / "table.csv", index=False)
    good.drop(columns="factual_class").to_csv(d / "table-no-class.csv", index=False)
    good.assign(masked=good.masked.str.replace("[MASK]", "he", regex=False)).to_csv(d / "table-no-mask.csv",
                                                                                  index=False)
    good.assign(masked=good.masked + " [MASK]").to_parquet(d / "table-two-masks.parquet", index=False)
    good.assign(factual_class=good.factual_class.replace({"3PL": "2SG"})).to_json(
        d / "table-2sg.jsonl", orient="records", lines=True)
    good.assign(split=good.split.replace({"test": "train"})).to_csv(d / "table-no-test.csv", index=False)
    (d / "table.xlsx").write_bytes(b"PK\x03\x04")
    (d / "table-bad.parquet").write_text("masked,factual\n")
    (d / "neutral.txt").write_text("the sun was warm .\nthe road was long .\n")


def table(name: str, *extra: str) -> list[str]:
    return ["data.builtin=null", f"data.table={{env}}/{name}", "data.neutral_corpus={env}/neutral.txt", *extra]


def yaml_file(env: Path, name: str, text: str | bytes) -> str:
    p = env / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


def corpus(env: Path, name: str, classes: str = "{3SG: [he], 3PL: [they]}") -> list[str]:
    return ["data.builtin=null", f"data.corpus={env / name}", f"data.classes={classes}"]


DUP_CLASSES = """
data:
  builtin: pronoun_number
  classes:
    3SG: [he, she]
    3PL: [they]
    3SG: [it]
"""

# id -> (config file (None: the tiny config), --set overrides, text the error line must contain)
CASES = {
    # config
    "unknown-key-suggests": (None, ["train.learnng_rate=1e-3"], "did you mean 'learning_rate'"),
    "unknown-section": (None, ["trian.max_steps=3"], "unknown section 'trian'"),
    "unknown-key-in-file": (lambda e: yaml_file(e, "k.yaml", "train: {max_step: 5}\n"), [], "max_step"),
    "wrong-type": (None, ["train.max_steps=many"], "train.max_steps: expected int"),
    "out-of-range": (None, ["train.learning_rate=-1"], "train.learning_rate must be > 0"),
    "bad-choice": (None, ["extract.dtype=float8"], "is not one of float16, bfloat16, float32"),
    "fraction-out-of-range": (None, ["pre_prune.topk=1.5"], "a fraction must be in (0, 1]"),
    "ratios-not-one": (None, ["data.train_ratio=0.95"], "sum to"),
    "micro-batch-too-big": (None, ["extract.micro_batch_size=16"], "micro_batch_size must be <="),
    "empty-grid": (None, ["decoder_grid.learning_rates=[]"], "decoder_grid.learning_rates must be a non-empty list"),
    "set-without-value": (None, ["train.max_steps"], "expected section.key=value"),
    "unknown-target-class": (None, ["rewrite.target_class=3SGG"], "did you mean '3SG'"),
    "config-file-missing": (lambda e: str(e / "nope.yaml"), [], "not found"),
    "invalid-yaml": (lambda e: yaml_file(e, "bad.yaml", "train: [1, 2\n"), [], "not valid YAML"),
    "yaml-not-a-mapping": (lambda e: yaml_file(e, "list.yaml", "- train\n- data\n"), [], "must hold a mapping"),
    "config-not-utf8": (lambda e: yaml_file(e, "l1.yaml", "name: caf\xe9\n".encode("latin-1")), [], "not UTF-8"),
    "duplicate-class-names": (lambda e: yaml_file(e, "dup.yaml", DUP_CLASSES), [], "key '3SG' is given twice"),
    "duplicate-class-names-in-set": (None, ["data.classes={a: [he], a: [they]}"], "key 'a' is given twice"),
    # model
    "model-missing": (None, ["model.name_or_path=/nonexistent/model"], "not found"),
    "model-dir-without-config": (None, ["model.name_or_path={env}/empty-dir"], "has no config.json"),
    "no-head-fitting-disabled": (None, ["model.name_or_path={env}/no-head"], "has no masked-LM head; enable"),
    "unknown-objective": (None, ["model.objective=mlmm"], "unknown objective 'mlmm' (did you mean 'mlm'?)"),
    "masked-objective-on-a-decoder": (None, ["model.name_or_path={env}/gpt2", "model.objective=mlm"],
                                      "objective 'mlm' cannot serve model type 'gpt2' (it has no masked-LM head)"),
    "cloze-objective-on-an-encoder": (None, ["model.objective=clm_sequence_cloze"], "objective 'clm_sequence_cloze' "
                                      "cannot serve model type 'bert' (it is not a decoder-only causal LM"),
    "objective-for-seq2seq-on-bert": (None, ["model.objective=seq2seq_encoder_mlm"],
                                      "objective 'seq2seq_encoder_mlm' cannot serve model type 'bert'"),
    "aux-head-objective-on-t5": (None, ["model.name_or_path={env}/t5", "model.objective=clm_mlm_head"],
                                 "objective 'clm_mlm_head' cannot serve model type 't5' (it is not a decoder-only"),
    "tokenizer-missing": (None, ["model.name_or_path={env}/no-tokenizer"], "no tokenizer files"),
    "target-not-encodable": (None, ["data.classes={a: [he], b: [\u2603]}"], "cannot be encoded"),
    # devices and precision (checked before the store is opened)
    "unknown-device": (None, ["model.device=gpu"], "model.device: unknown device 'gpu'; use auto, cpu, cuda"),
    "device-index-missing": (None, ["model.device=cuda:64"], "model.device: cuda:64 requested but"),
    "unknown-train-device": (None, ["train.device=tpu"], "train.device: unknown device 'tpu'"),
    "train-device-missing": (None, ["train.device=cuda:64"], "train.device: cuda:64 requested but"),
    "decoder-device-missing": (None, ["train.decoder_device=cuda:64"], "train.decoder_device: cuda:64 requested"),
    "unknown-dtype": (None, ["model.dtype=float8"], "is not one of float32, bfloat16, float16"),
    # data
    "corpus-missing": (None, ["data.builtin=null", "data.corpus={env}/missing.txt",
                              "data.classes={3SG: [he], 3PL: [they]}"], "not found"),
    "corpus-empty": (None, "empty.txt", "no non-empty text"),
    "corpus-not-utf8": (None, "latin1.txt", "not valid UTF-8"),
    "class-without-match": (None, "only-he.txt", "class '3PL' matched no sentence"),
    "too-few-rows-for-splits": (None, "few.txt", "too few for train/validation/test"),
    "corpus-without-classes": (None, ["data.builtin=null", "data.corpus={env}/few.txt"], "data.classes is required"),
    "unknown-builtin": (None, ["data.builtin=pronoun_numbr"], "did you mean 'pronoun_number'"),
    "word-in-two-classes": (None, ["data.classes={a: [he, they], b: [they]}"], "is in classes 'a' and 'b'"),
    "single-class": (None, ["data.classes={a: [he]}"], "need at least 2 classes"),
    "eval-split-empty": (None, ["data.train_ratio=0.9", "data.test_ratio=0"],
                         "evaluate_encoder.split 'test' has no row of class '3SG'"),
    "preprocess-window-zero": (None, ["data.preprocess.sentences=0"], "data.preprocess.sentences must be"),
    "documents-folder-empty": (None, corpus(Path("{env}"), "empty-dir"), "holds no .txt file (it is empty)"),
    # labelled tables
    "table-missing": (None, table("nope.csv"), "not found"),
    "table-column-missing": (None, table("table-no-class.csv"), "no factual_class column (looked for "
                             "'factual_class' or 'label_class'; columns found: masked, factual, split)"),
    "table-column-map-missing": (None, table("table.csv", "data.table_columns={masked: sentence}"),
                                 "has no column 'sentence' (data.table_columns.masked); columns found: masked"),
    "table-without-mask": (None, table("table-no-mask.csv"), "row 1: the masked text holds 0 [MASK] placeholders"),
    "table-two-masks": (None, table("table-two-masks.parquet"), "holds 2 [MASK] placeholders, needs exactly one"),
    "table-unknown-class": (None, table("table-2sg.jsonl", "data.classes={3SG: [he], 3PL: [they]}"),
                            "has class '2SG' (column 'factual_class') that data.classes does not list"),
    "table-empty-split": (None, table("table-no-test.csv"), "class '3SG' has no 'test' row in data.table"),
    "table-unknown-extension": (None, table("table.xlsx"), "unknown table format '.xlsx'"),
    "table-unreadable": (None, table("table-bad.parquet"), "cannot read parquet file"),
    "table-without-neutral": (None, ["data.builtin=null", "data.table={env}/table.csv"], "set data.neutral_corpus"),
    "table-and-corpus": (None, table("table.csv", "data.corpus={env}/few.txt"), "not both"),
    # store
    "store-not-creatable": ("store:{env}/file-not-dir/store", [], "is not writable"),
    # numbers: ints are counts, floats fractions; nothing infinite or NaN; seeds in numpy's range
    "topk-count-zero": (None, ["pre_prune.topk=0"], "pre_prune.topk: a count must be >= 1, got 0"),
    "post-prune-count-zero": (None, ["post_prune.topk=0"], "post_prune.topk: a count must be >= 1, got 0"),
    "learning-rate-infinite": (None, ["train.learning_rate=.inf"], "train.learning_rate: inf is not a finite number"),
    "learning-rate-inf-as-text": (None, ["train.learning_rate=inf"], "train.learning_rate: inf is not a finite number"),
    "learning-rate-overflows": (None, ["train.learning_rate=1e999"], "train.learning_rate: inf is not a finite"),
    "feature-factor-nan": (None, ["decoder_grid.feature_factors=[1, .nan]"],
                           "decoder_grid.feature_factors[1]: nan is not a finite number"),
    "head-lr-infinite": (None, ["model.head.lr=.inf"], "model.head.lr: inf is not a finite number"),
    "seed-negative": (None, ["decoder_grid.seed=-1"], "decoder_grid.seed must be an integer in [0, 4294967295], got -1"),
    "seeds-past-the-range": (None, ["train.seed=4294967295"], "train.seed must be an integer in [0, 4294967294]"),
    # settings that could never take effect
    "grid-learning-rate-zero": (None, ["decoder_grid.learning_rates=[0, 0.1]"],
                                "learning_rates holds 0: a cell with learning rate <= 0 leaves the base model"),
    "grid-learning-rate-negative": (None, ["decoder_grid.learning_rates=[-0.1]"], "learning_rates holds -0.1"),
    "grid-learning-rate-twice": (None, ["decoder_grid.learning_rates=[0.1, 0.1]"], "lists 0.1 twice"),
    "min-convergent-unreachable": (None, ["select.min_convergent_seeds=3"], "so it can never be reached"),
    "grid-without-the-requests-factor": (None, ["decoder_grid.feature_factors=[2]"],
                                         "has no cell of feature factor 1, the one that can strengthen 3SG"),
    "compare-topk-zero": (None, ["suite.compare.topk=0"], "suite.compare.topk: a count must be >= 1"),
    "compare-measure-twice": (None, ["suite.compare.measures=[cosine, cosine]"], "lists 'cosine' twice"),
    "experiment-file-empty": (lambda e: yaml_file(e, "empty.yaml", ""), [], "is empty (no settings)"),
    "experiment-file-comments-only": (lambda e: yaml_file(e, "c.yaml", "# train: {max_steps: 5}\n"), [], "is empty"),
    # distributed runners: the address is probed before anything else
    "dask-address-silent": (None, ["runner.kind=dask", "runner.address=tcp://127.0.0.1:1"],
                            "runner.address tcp://127.0.0.1:1: no dask scheduler answers at 127.0.0.1:1"),
    "ray-address-silent": (None, ["runner.kind=ray", "runner.address=ray://127.0.0.1:1"],
                           "no ray cluster answers at 127.0.0.1:1"),
    "runner-address-malformed": (None, ["runner.kind=dask", "runner.address=tcp://host:port"],
                                 "is not a dask address like tcp://host:8786"),
    # what later stages need of the data
    "no-neutral-text": (None, ["data.neutral_max=0"], "no neutral text is left for the decoder grid's LMS"),
    "base-batch-too-big": (None, ["train.base_batch_size=100"], "train.base_batch_size 100 is more than the"),
}

# cases answered before the store is opened: not even its directory is created
BEFORE_THE_STORE = {"topk-count-zero", "post-prune-count-zero", "learning-rate-infinite", "learning-rate-inf-as-text",
                    "learning-rate-overflows", "feature-factor-nan", "head-lr-infinite", "seed-negative",
                    "seeds-past-the-range", "grid-learning-rate-zero", "grid-learning-rate-negative",
                    "grid-learning-rate-twice", "min-convergent-unreachable", "grid-without-the-requests-factor",
                    "compare-topk-zero",
                    "compare-measure-twice", "experiment-file-empty", "experiment-file-comments-only",
                    "dask-address-silent", "ray-address-silent", "runner-address-malformed", "model-missing",
                    "corpus-missing"}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, env, tmp_path, capsys):
    config, sets, needle = CASES[case]
    if isinstance(sets, str):  # a custom corpus file
        sets = corpus(env, sets)
    store = tmp_path / "store"
    if isinstance(config, str) and config.startswith("store:"):
        store, config = Path(config[len("store:"):].replace("{env}", str(env))), None
    config = config(env) if callable(config) else str(env / "config.yaml")
    argv = ["run", config, "--store", str(store)]
    for s in sets:
        argv += ["--set", s.replace("{env}", str(env))]
    assert_fails_cleanly(argv, store, needle, capsys)
    if case in BEFORE_THE_STORE:
        assert not store.exists()


def assert_fails_cleanly(argv, store: Path, needle: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    # no stage output: at most the (empty) store's marker and lock files
    assert not store.exists() or not [p for p in store.iterdir() if p.name not in (".locks", MARKER)], \
        list(store.iterdir())


def test_not_enough_disk_for_extraction(env, tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))  # 1 kB free
    store = tmp_path / "store"
    assert_fails_cleanly(["run", str(env / "config.yaml"), "--store", str(store)], store,
                         "extraction needs up to", capsys)


def test_diverging_training_stops_without_a_checkpoint(env, tmp_path):
    """Runtime, not input: found only by training. It stops with the fix and publishes nothing."""
    from gradiend_core.errors import GradiendError
    from gradiend_core.experiment import load_experiment
    from gradiend_core.stages.plan import plan, run_step
    from gradiend_core.store import LocalStore

    s, done = LocalStore(tmp_path / "store"), {}
    steps = plan(load_experiment(env / "config.yaml", ["train.learning_rate=1e30", "train.max_seeds=1"]))
    with pytest.raises(GradiendError, match="lower the learning rate") as e:
        for sid, p in steps.items():
            done[sid] = run_step(s, p, {n: done[i] for n, i in p.inputs.items()})
    assert "\n" not in str(e.value) and set(done) == {"prepare-model", "create-data", "extract-gradients",
                                                      "pre-prune"}
    assert not [k for st, k in s.outputs() if st == "train-seed"] and s.leftovers() == []


@pytest.mark.parametrize("device, needle", [
    ("cuda", "model.device: cuda requested but CUDA is not available on this host"),
    ("mps", "model.device: mps is not available on this host"),
])
def test_device_not_on_this_host(env, tmp_path, capsys, monkeypatch, device, needle):
    import torch

    from gradiend_core import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU host or a Mac
    monkeypatch.setattr(devices, "_has_mps", lambda: False)
    store = tmp_path / "store"
    assert_fails_cleanly(["run", str(env / "config.yaml"), "--store", str(store), "--set", f"model.device={device}"],
                         store, needle, capsys)


def test_dtype_the_device_cannot_run(env, tmp_path, capsys, monkeypatch):
    """As on a torch whose CPU kernels lack float16 layer norm: the dtype probe fails, nothing is built."""
    import torch

    real = torch.nn.functional.layer_norm

    def no_half(x, *a, **k):
        if x.dtype == torch.float16:
            raise RuntimeError('"LayerNormKernelImpl" not implemented for \'Half\'')
        return real(x, *a, **k)

    monkeypatch.setattr(torch.nn.functional, "layer_norm", no_half)
    store = tmp_path / "store"
    assert_fails_cleanly(["run", str(env / "config.yaml"), "--store", str(store), "--set", "model.device=cpu",
                          "--set", "model.dtype=float16"], store,
                         "model.dtype: float16 cannot run on cpu (\"LayerNormKernelImpl\" not implemented", capsys)


def _sets(*values: str) -> list[str]:
    return [a for v in values for a in ("--set", v)]


def test_data_mistakes_found_with_extraction_cached(env, tmp_path, capsys):
    """Settings outside extraction's key (evaluate_encoder.split, train.base_batch_size) are checked against the
    cached create-data output: refused before training, not after it, and the store keeps exactly what it had."""
    from gradiend_core.experiment import load_experiment
    from gradiend_core.stages.plan import plan, run_step
    from gradiend_core.store import LocalStore

    no_test = ["data.train_ratio=0.9", "data.test_ratio=0"]
    s, done = LocalStore(tmp_path / "store"), {}
    steps = plan(load_experiment(env / "config.yaml", no_test + ["evaluate_encoder.split=train"]))
    for sid in ("prepare-model", "create-data", "extract-gradients"):
        p = steps[sid]
        done[sid] = run_step(s, p, {n: done[i] for n, i in p.inputs.items()})
    before = sorted(s.outputs())
    for sets, needle in ((["evaluate_encoder.split=test"], "evaluate_encoder.split 'test' has no row of class '3SG'"),
                         (["evaluate_encoder.split=train", "train.base_batch_size=100"],
                          "train.base_batch_size 100 is more than the 27 train rows of class '3SG'")):
        assert_fails_cleanly(["run", str(env / "config.yaml"), "--store", str(tmp_path / "store"),
                              *_sets(*no_test, *sets)], tmp_path / "empty", needle, capsys)
        assert sorted(s.outputs()) == before and s.leftovers() == []


def test_target_word_matching_nothing_is_warned_before_extraction(env, tmp_path, capsys, monkeypatch):
    """A target word no sentence holds as a whole word adds no rows: a warning line names it, before extraction
    (which then stops here on a full disk, so the test needs no run)."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    store = tmp_path / "store"
    assert main(["run", str(env / "config.yaml"), "--store", str(store),
                 *_sets('data.classes={3SG: [he, she, "he!"], 3PL: [they]}')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("warning: target word 'he!' of class '3SG' occurs in no sentence"), err
    assert err[1].startswith("error: extraction needs up to"), err
