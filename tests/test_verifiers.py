"""The built-in verifiers compare exactly: a wrong answer never passes on rounding or on a loose
reading of the text."""

import pytest

from starjax.tasks.verifiers import canonical_number, choice, numeric

THIRTY = "9" * 30


@pytest.mark.parametrize(
    "predicted, gold, same",
    [
        ("1 0 0 0 0 0 0 0 0 0", "1 0 0 0 0 0 0 0 0 1", False),  # 10 digits: a float's tolerance accepted this
        (" ".join(THIRTY), THIRTY, True),
        (" ".join(THIRTY[:-1] + "8"), THIRTY, False),
        ("1" + "0" * 29, "1" + "0" * 28 + "1", False),
        ("3/2", "1/2", False),
        ("6/4", "3/2", True),
        ("\u22125", "5", False),  # Unicode minus
        ("\u22125", "-5", True),
        ("1,5", "15", False),  # not a thousands separator
        ("1,2345", "12345", False),
        ("1,234", "1234", True),
        ("12,345,678", "12345678", True),
        ("72.0", "72", True),
        ("0.1", "1/10", True),
        ("$72", "72", True),
        ("The answer is 1,234.", "1234", True),
        ("1 4 5 8", "1458", True),
        ("no number", "0", False),
        ("3/0", "3", False),
    ],
)
def test_numeric_is_exact(predicted, gold, same):
    assert numeric(predicted, gold) is same


def test_canonical_number_is_the_exact_value_or_none():
    assert canonical_number(" ".join(THIRTY)) == int(THIRTY)
    assert canonical_number("-3/2") == canonical_number("-1.5")
    assert canonical_number("1,5") is None and canonical_number("none") is None
    assert numeric(None, "1") is False


@pytest.mark.parametrize(
    "predicted, letter",
    [
        ("(B)", "B"),
        ("B.", "B"),
        ("b", "B"),
        ("B) cats", "B"),
        ("a dog (B)", "B"),
        ("I'd say (B)", "B"),
        ("I'd say B", "B"),
        ("A or (B)? I say (C)", "C"),
        ("The answer is C", "C"),
        ("no letter here", None),
    ],
)
def test_choice_reads_a_parenthesised_letter_else_the_last_choice_letter(predicted, letter):
    for gold in "ABC":
        assert choice(predicted, gold) is (letter == gold)


def test_choice_letters_reach_the_gold_letter():
    assert choice("then G", "G") and not choice("then G", "B")  # G counts when the gold says there are 7 choices
    assert not choice("I am sure", "A")  # "I" is no choice among A-E
