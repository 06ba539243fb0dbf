import random

import pytest

from starjax.sentencepiece_tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer
from starjax.sentencepiece_tokenizer import SentencePieceTokenizer as Tokenizer


def scratchpad_texts(n=200, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        digits = lambda x: " ".join(str(x))  # noqa: E731
        out.append(f"Input:\n{digits(a)} + {digits(b)}\nTarget:\n<scratch>\n{digits(a + b)}\n</scratch>\n{digits(a + b)}")
    return out


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(
        scratchpad_texts(), tmp_path_factory.mktemp("tok"), vocab_size=320, user_symbols=["<scratch>", "</scratch>"]
    )


@pytest.mark.parametrize(
    "text",
    [
        scratchpad_texts(1, seed=5)[0],
        "  two leading spaces,\n\nblank lines\tand tabs  ",
        "unseen characters: é, 漢字, emoji 🙂",
        "1234567890 + 0987654321",
        "",
    ],
)
def test_round_trip_is_exact(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_digits_are_one_token_each(tok):
    for number in ("1458", "9876543210", "0"):
        ids = tok.encode(number)
        assert [tok.piece(i) for i in ids] == list(number)
    assert len(tok.encode("9 6 4")) == 5  # digit, space, digit, space, digit


def test_special_ids_and_user_symbols(tok):
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (PAD_ID, BOS_ID, EOS_ID)
    ids = tok.encode("1 + 2", add_bos=True, add_eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert tok.decode(ids + [PAD_ID, PAD_ID]) == "1 + 2"  # specials and padding are dropped
    assert tok.encode("<scratch>") == [tok.encode("<scratch>")[0]]  # one piece
    assert tok.encode_batch(["1", "2"]) == [tok.encode("1"), tok.encode("2")]
    assert tok.vocab_size <= 320


def test_training_is_deterministic_and_cached(tmp_path):
    a = train_tokenizer(scratchpad_texts(), tmp_path / "a", vocab_size=300)
    b = train_tokenizer(scratchpad_texts(), tmp_path / "b", vocab_size=300)
    assert open(a.source, "rb").read() == open(b.source, "rb").read()
    again = train_tokenizer(scratchpad_texts(), tmp_path / "a", vocab_size=300)
    assert again.source == a.source and len(list((tmp_path / "a").iterdir())) == 1
    changed = train_tokenizer(scratchpad_texts(seed=1), tmp_path / "a", vocab_size=300)
    assert changed.source != a.source


def test_load_existing_model_file(tok):
    loaded = Tokenizer.load(tok.source)
    text = "Input:\n1 2 + 3 4"
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.vocab_size == tok.vocab_size


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        Tokenizer.load(tmp_path / "missing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="is not a SentencePiece model"):
        Tokenizer.load(junk)
    with pytest.raises(ValueError, match="no text"):
        train_tokenizer([], tmp_path, vocab_size=100)
    with pytest.raises(ValueError, match="tokenizer training failed"):
        train_tokenizer(["abc"], tmp_path, vocab_size=5)
