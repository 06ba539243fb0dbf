"""A Hugging Face checkpoint's own tokenizer, behind the `starjax.tokenizer.Tokenizer` interface, a peer of SentencePieceTokenizer.

`tokenizer.json` (Llama 3, Qwen, and most current checkpoints) is run by the `tokenizers`
library, exactly as transformers' fast tokenizers run it; a directory with only a SentencePiece
`tokenizer.model` (Llama 2, Mistral, Gemma) uses starjax's SentencePiece tokenizer. The special
ids come from the checkpoint's tokenizer_config.json / generation_config.json / config.json.
bos only where the checkpoint's tokenizer adds one; chat templates: starjax/hf/chat.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from starjax.errors import ConfigError

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot parse {str(path)!r}: {e}") from None
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json names a special token as a string or as {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _ids(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    return [v for v in value if isinstance(v, int)] if isinstance(value, list) else []


class HFTokenizer:
    """tokenizer.json via `tokenizers`; ids as the checkpoint defines them.

    eos_id is the first end-of-sequence id; any further ones (Llama 3 instruct stops at
    <|eot_id|> too) are in `extra_stop_ids`, which the sampler treats as stops.
    """

    def __init__(self, directory: str | Path):
        from tokenizers import Tokenizer as _Fast

        d = Path(directory)
        self.source = str(d / "tokenizer.json")
        try:
            self._tok = _Fast.from_file(self.source)
        except Exception as e:  # the Rust library raises plain Exceptions
            raise ConfigError(f"cannot load {self.source!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        specials = special_ids(d, self._tok.token_to_id)
        self.bos_id: int | None = specials["bos"]
        if specials["eos"] is None:
            raise ConfigError(f"{str(d)!r} defines no eos token; starjax needs one to stop generation")
        self.eos_id: int = specials["eos"]
        self.extra_stop_ids: list[int] = specials["extra_eos"]
        self.pad_id: int = specials["pad"] if specials["pad"] is not None else self.eos_id
        # Whether this checkpoint's tokenizer puts bos in front of a text (Llama 3 does, Qwen does not).
        probe = self._tok.encode("a", add_special_tokens=True).ids
        self.adds_bos = self.bos_id is not None and bool(probe) and probe[0] == self.bos_id

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        bos = [self.bos_id] if add_bos and self.adds_bos else []
        return bos + ids + ([self.eos_id] if add_eos else [])

    def encode_batch(self, texts: Sequence[str], add_bos: bool = False, add_eos: bool = False) -> list[list[int]]:
        return [self.encode(t, add_bos, add_eos) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; special tokens (bos, eos, pad, ...) are dropped."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def piece(self, token_id: int) -> str:
        return self._tok.id_to_token(int(token_id)) or ""


def special_ids(directory: Path, token_to_id) -> dict[str, Any]:
    """bos/eos/pad ids (None when undefined) and extra eos ids, from the checkpoint's files:
    tokenizer_config.json names the tokens; generation_config.json and config.json give ids."""
    tc = _json(directory / "tokenizer_config.json")
    stm = _json(directory / "special_tokens_map.json")
    gen = _json(directory / "generation_config.json")
    cfg = _json(directory / "config.json")
    out: dict[str, Any] = {}
    for kind in ("bos", "eos", "pad"):
        text = _token_text(tc.get(f"{kind}_token")) or _token_text(stm.get(f"{kind}_token"))
        tid = token_to_id(text) if text is not None else None
        ids = _ids(gen.get(f"{kind}_token_id")) or _ids(cfg.get(f"{kind}_token_id"))
        out[kind] = tid if tid is not None else (ids[0] if ids else None)
        if kind == "eos":
            out["extra_eos"] = [i for i in ids if i != out["eos"]]
    return out


def _metaspace_first(path: Path):
    """The SentencePiece model at `path`, encoding as transformers does: its Metaspace conversion
    adds the dummy-prefix space only where the text does not already start with one (and strips
    it on decode), where SentencePiece itself always adds it."""
    from sentencepiece import sentencepiece_model_pb2

    from starjax.sentencepiece_tokenizer import SentencePieceTokenizer

    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {str(path)!r} not found")
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception:  # protobuf's DecodeError: not a SentencePiece model
        raise ValueError(f"{path} is not a SentencePiece model") from None
    prepend = proto.normalizer_spec.add_dummy_prefix
    proto.normalizer_spec.add_dummy_prefix = False
    tok = SentencePieceTokenizer(proto.SerializeToString(), str(path))
    tok.prepend_space = prepend
    return tok


def load_hf_tokenizer(directory: str | Path):
    """The tokenizer of a Hugging Face checkpoint directory: tokenizer.json if present, else a
    SentencePiece tokenizer.model with the checkpoint's special ids."""
    d = Path(directory).expanduser()
    if (d / "tokenizer.json").is_file():
        return HFTokenizer(d)
    if (d / "tokenizer.model").is_file():
        tok = _metaspace_first(d / "tokenizer.model")
        specials = special_ids(d, tok.token_id)
        for kind in ("bos", "eos", "pad"):
            if specials[kind] is not None:
                setattr(tok, f"{kind}_id", specials[kind])
        tok.extra_stop_ids = specials["extra_eos"]
        # SentencePiece checkpoints of these families prepend bos unless their config says not to.
        tok.adds_bos = bool(_json(d / "tokenizer_config.json").get("add_bos_token", True))
        return tok
    raise ConfigError(f"{str(d)!r} has neither tokenizer.json nor tokenizer.model; set tokenizer.path")
