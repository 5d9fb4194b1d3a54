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


def _wordlevel_tokenizer(words: list[str], specials: list[str], template: str, **special_kw):
    """A lower-casing word-level tokenizer (whitespace and punctuation split) as PreTrainedTokenizerFast.

    specials: special tokens first in the vocabulary (their ids are their positions); template: the
    post-processor's single-sequence template, e.g. "$A </s>"; special_kw: the token roles (eos_token=...)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + words))}
    unk = special_kw["unk_token"]
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece()  # joins words with spaces
    used = [t for t in specials if t in template]
    tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=[(t, vocab[t]) for t in used])
    extra = [t for t in specials if t not in special_kw.values()]
    return PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=extra, **special_kw)


def tiny_t5(seed: int = 0, hidden: int = 32, layers: int = 2, words: list[str] | None = None, sentinels: int = 4):
    """A randomly initialised T5ForConditionalGeneration and a word-level tokenizer with T5's special
    tokens (<pad> 0, </s> 1, <unk> 2, sentinels <extra_id_0>...; "</s>" appended to every text)."""
    from transformers import T5Config, T5ForConditionalGeneration

    specials = ["<pad>", "</s>", "<unk>"] + [f"<extra_id_{i}>" for i in range(sentinels)]
    tokenizer = _wordlevel_tokenizer(tiny_vocab_words(words), specials, "$A </s>", pad_token="<pad>",
                                     eos_token="</s>", unk_token="<unk>")
    config = T5Config(vocab_size=len(tokenizer), d_model=hidden, d_kv=hidden // 2, d_ff=2 * hidden,
                      num_layers=layers, num_decoder_layers=layers, num_heads=2, dropout_rate=0.0,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config).eval(), tokenizer


def tiny_bart(seed: int = 0, hidden: int = 32, layers: int = 2, words: list[str] | None = None):
    """A randomly initialised BartForConditionalGeneration and a word-level tokenizer with BART's special
    tokens (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 4; texts become "<s> ... </s>")."""
    from transformers import BartConfig, BartForConditionalGeneration

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = _wordlevel_tokenizer(tiny_vocab_words(words), specials, "<s> $A </s>", bos_token="<s>",
                                     pad_token="<pad>", eos_token="</s>", unk_token="<unk>", mask_token="<mask>")
    config = BartConfig(vocab_size=len(tokenizer), d_model=hidden, encoder_layers=layers, decoder_layers=layers,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * hidden,
                        decoder_ffn_dim=2 * hidden, max_position_embeddings=128, dropout=0.0,
                        attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)
    torch.manual_seed(seed)
    return BartForConditionalGeneration(config).eval(), tokenizer
