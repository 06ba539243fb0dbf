"""SentencePiece tokenizers: load any `.model` file, or train a small deterministic one from text.

Trained tokenizers keep text exactly (identity normalisation, no dummy prefix, whitespace kept,
newline as its own piece, byte fallback) and split digits one per token, which arithmetic tasks
need. Ids: pad 0, unk 1, bos 2, eos 3.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class SentencePieceTokenizer:
    """A SentencePiece model with bos/eos/pad ids always defined (a `starjax.tokenizer.Tokenizer`)."""

    def __init__(self, model_proto: bytes, source: str = "<memory>"):
        self.source = source
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_proto)
        except Exception:
            raise ValueError(f"{source} is not a SentencePiece model") from None
        if self._sp.eos_id() < 0:
            raise ValueError(f"{source} defines no eos piece; starjax needs one to stop generation")
        self.eos_id: int = self._sp.eos_id()
        self.bos_id: int = self._sp.bos_id() if self._sp.bos_id() >= 0 else self.eos_id
        # Llama-style models often have no pad piece; padding is always masked, so eos serves.
        self.pad_id: int = self._sp.pad_id() if self._sp.pad_id() >= 0 else self.eos_id
        # Checkpoint tokenizers (starjax.hf.tokenizer) may turn bos off and add stop ids.
        self.adds_bos = True
        self.extra_stop_ids: list[int] = []
        self.prepend_space = False  # a space before text that has none (transformers' Metaspace "first")

    @classmethod
    def load(cls, path: str | Path) -> "SentencePieceTokenizer":
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"tokenizer file {str(p)!r} not found")
        return cls(p.read_bytes(), str(p))

    @property
    def vocab_size(self) -> int:
        return self._sp.vocab_size()

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        if self.prepend_space and not text.startswith(" "):
            text = " " + text
        ids = self._sp.encode(text)
        return ([self.bos_id] if add_bos and self.adds_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def encode_batch(self, texts: Sequence[str], add_bos: bool = False, add_eos: bool = False) -> list[list[int]]:
        return [self.encode(t, add_bos, add_eos) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; pad, bos and eos are dropped."""
        special = {self.pad_id, self.bos_id, self.eos_id}
        text = self._sp.decode([int(i) for i in ids if int(i) not in special])
        return text[1:] if self.prepend_space and text.startswith(" ") else text

    def piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(int(token_id))

    def token_id(self, piece: str) -> int | None:
        """The id of `piece`, or None when the vocabulary lacks it."""
        i = self._sp.piece_to_id(piece)
        return None if i == self._sp.unk_id() and piece != self._sp.id_to_piece(i) else i


def train_tokenizer(
    texts: Iterable[str],
    cache_dir: str | Path,
    vocab_size: int,
    user_symbols: Sequence[str] = (),
    byte_fallback: bool = True,
    split_digits: bool = True,
) -> SentencePieceTokenizer:
    """Trains (or loads from `cache_dir`) a tokenizer for `texts`.

    The cache file is named by a hash of the texts and settings, so the same task data always
    maps to the same file, and changed data never reuses a stale tokenizer. Text whose digits
    are already space-separated can turn `split_digits` off: each digit then merges with the
    space before it, which halves the sequence and still gives one digit per token.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("cannot train a tokenizer on no text")
    settings = dict(
        vocab_size=vocab_size,
        model_type="bpe",
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        split_digits=split_digits,
        byte_fallback=byte_fallback,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=["\n", *user_symbols],
        character_coverage=1.0,
        hard_vocab_limit=False,  # small corpora may support fewer pieces than asked for
        # determinism: one thread, every sentence, no shuffling
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
    )
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for t in texts:
        digest.update(t.encode())
        digest.update(b"\0")
    path = Path(cache_dir) / f"tokenizer-{digest.hexdigest()[:16]}.model"
    if path.is_file():
        return SentencePieceTokenizer.load(path)
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=buf, minloglevel=2, **settings)
    except RuntimeError as e:
        raise ValueError(f"tokenizer training failed: {str(e).splitlines()[-1]}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)  # atomic: concurrent or killed runs never see half a file
    return SentencePieceTokenizer.load(path)
