"""Tiny language models built in-process from configs, with locally built tokenizers.

No download, deterministic for a seed, fast enough for unit tests and CI smoke benchmarks.
`tiny_mlm` is a BERT masked LM with a word-level WordPiece vocabulary; `tiny_clm` is a GPT-2
causal LM with a byte-level BPE tokenizer (so leading-space handling is exercised).
"""
from __future__ import annotations

from pathlib import Path

import torch

# Words the tiny models know. Built-in data-set vocabulary is added by callers via `words=`.
_BASE_WORDS = """
he she it they him her his hers them their theirs we you i me my
the a an and or but that this these those there here then when while because although if
is are was were be been has have had do does did will would can could should may might
said says thinks thought knows knew told asked went goes came comes saw sees made makes
doctor nurse teacher student child children man woman men women people friend friends dog dogs
cat cats book books car cars house city town school park river day night morning week year
happy sad tired late early quickly slowly again never always often today yesterday tomorrow
to of in on at for with from by about into over after before under near
. , ! ? ' -
""".split()


def tiny_vocab_words(extra: list[str] | None = None) -> list[str]:
    """Deduplicated word list (order-preserving) for the tiny tokenizers."""
    seen: dict[str, None] = {}
    for w in _BASE_WORDS + list(extra or []):
        seen.setdefault(w.lower(), None)
    return list(seen)


def _wordpiece_tokenizer(words: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + words + chars + pieces))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return BertTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
        cls_token="[CLS]", mask_token="[MASK]", do_lower_case=True,
    )


def _bytelevel_bpe_tokenizer(words: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # Each word with and without a leading space, repeated so every word becomes one token.
    corpus = [f"{w} {w} {w}" for w in words for _ in range(3)] + [" ".join(words)]
    tok.train_from_iterator(corpus, trainer=trainer)
    return GPT2TokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                             unk_token="<|endoftext|>")


def tiny_mlm(seed: int = 0, hidden: int = 32, layers: int = 2, words: list[str] | None = None):
    """A randomly initialised BertForMaskedLM and its WordPiece tokenizer."""
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = _wordpiece_tokenizer(tiny_vocab_words(words))
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config).eval()
    return model, tokenizer


def tiny_clm(seed: int = 0, hidden: int = 32, layers: int = 2, words: list[str] | None = None):
    """A randomly initialised GPT2LMHeadModel and its byte-level BPE tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _bytelevel_bpe_tokenizer(tiny_vocab_words(words))
    tokenizer.pad_token = tokenizer.eos_token
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=hidden, n_layer=layers, n_head=2, n_positions=128,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    return model, tokenizer


def save_tiny(model, tokenizer, path: str | Path) -> Path:
    """Save a tiny model and tokenizer as a local model directory (loadable by path)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_experiment(model_dir: str | Path, name: str = "tiny-pronouns") -> dict:
    """The default pipeline at tiny sizes on a tiny local model (tests, benchmark smoke modes)."""
    return {
        "name": name,
        "model": {"name_or_path": str(model_dir), "fit_head": "never"},
        "data": {"builtin": "pronoun_number", "max_per_class": 30, "neutral_max": 12},
        "extract": {"batch_size": 8, "micro_batch_size": 4, "max_neutral_rows": 6},
        "pre_prune": {"n_samples": 4, "topk": 0.25},
        "train": {"max_steps": 12, "eval_steps": 4, "max_seeds": 2, "learning_rate": 1e-3},
        "decoder_grid": {"learning_rates": [1.0, 0.1], "max_rows_per_class": 4, "lms_max_texts": 8},
    }
