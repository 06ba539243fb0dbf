"""The tokenizer interface every part of starjax uses. Two implementations are peers:
`SentencePieceTokenizer` (starjax/sentencepiece_tokenizer.py: any .model file, or one trained on
a task's text) and `HFTokenizer` (starjax/hf/tokenizer.py: a checkpoint's tokenizer.json);
`starjax.sources.load_tokenizer` chooses between them."""

from __future__ import annotations

from typing import Protocol, Sequence


class Tokenizer(Protocol):
    source: str  # where it was read from
    bos_id: int
    eos_id: int
    pad_id: int
    adds_bos: bool  # whether encode(add_bos=True) prepends bos (some checkpoints turn it off)
    extra_stop_ids: list[int]  # ids that end generation besides eos

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str], add_bos: bool = False, add_eos: bool = False) -> list[list[int]]: ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special ids dropped."""
        ...
