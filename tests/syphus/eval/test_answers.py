"""The lenient answer parser reads what people and models actually write, and never reads a
letter out of a word."""

from __future__ import annotations

import pytest

from syphus.eval.answers import numbers_in, parse_choice, parse_number, parse_yes_no

OPTIONS = {"A": "dog", "B": "cat", "C": "red", "D": "dark red"}


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Yes", "yes"),
        ("Yes.", "yes"),
        ("yes, there is", "yes"),
        ("YES!", "yes"),
        ("**Yes**", "yes"),
        ("Yeah, I can see one.", "yes"),
        ("y", "yes"),
        ("No", "no"),
        ("No.", "no"),
        ("no, there isn't", "no"),
        ("NO!", "no"),
        ("Nope.", "no"),
        ("The answer is no.", "no"),
        ("Answer: yes", "yes"),
        ("There is no dog in the image.", "no"),
        ("There is a dog on the sofa.", "yes"),
        ("There are two cats.", "yes"),
        ("There aren't any cats here.", "no"),
        ("It is not a cat.", "no"),
        ("Yes and no.", None),
        ("I do not know.", None),
        ("", None),
        (None, None),
        ("Maybe", None),
        # Words that start like yes/no are not answers.
        ("Nothing suggests so, but Yesterday it was.", None),
        ("Noon.", None),
    ],
)
def test_yes_no(reply, expected):
    assert parse_yes_no(reply) == expected


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B)", "B"),
        ("B) cat", "B"),
        ("[C]", "C"),
        ("**C**", "C"),
        ("The answer is B", "B"),
        ("The answer is B.", "B"),
        ("The correct answer is (D).", "D"),
        ("Answer: b", "B"),
        ("answer: a", "A"),
        ("Option D", "D"),
        ("I think it is C.", "C"),
        ("I think the answer is (c).", "C"),
        ("B is correct", "B"),
        ("A is the right one.", "A"),
        ("A. dog", "A"),
        ("A", "A"),
        ("a", "A"),
        # "A" and "a" before a word are articles: the option's text decides.
        ("A cat", "B"),
        ("a cat", "B"),
        ("A dog.", "A"),
        ("The answer is a cat.", "B"),
        ("It is a cat", "B"),
        ("the cat", "B"),
        ("Cat.", "B"),
        # The longer option wins when it contains the shorter one.
        ("dark red", "D"),
        ("It looks red to me.", "C"),
        # Letters inside words are not answers; ambiguity gives nothing.
        ("Because it is blue", None),
        ("Both A and B", None),
        ("A or B", None),
        ("dog or cat", None),
        ("I cannot tell.", None),
        ("", None),
        # The last explicit answer is the final one.
        ("Option A is wrong, so the answer is B.", "B"),
    ],
)
def test_choice(reply, expected):
    assert parse_choice(reply, OPTIONS) == expected


def test_choice_without_option_texts_reads_only_letters():
    assert parse_choice("The answer is C", letters="ABCD") == "C"
    assert parse_choice("A cat", letters="ABCD") is None
    assert parse_choice("E", letters="ABCD") is None


def test_choice_ignores_letters_that_are_not_options():
    two = {"A": "circle", "B": "square"}
    assert parse_choice("C", two) is None
    assert parse_choice("I'd say square, not C", two) == "B"


def test_pronoun_i_is_not_option_i():
    nine = {k: f"option {k}" for k in "ABCDEFGHI"}
    assert parse_choice("I think it is E.", nine) == "E"
    assert parse_choice("I", nine) == "I"


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("12", "12"),
        ("The answer is 12 cm.", "12"),
        ("There are 3 circles.", "3"),
        ("x = 3.50", "3.5"),
        ("1,000 people", "1000"),
        ("2/3 of them", "0.6666666666666666"),
        ("-4", "-4"),
        ("about .5", "0.5"),
        ("So the total is 45. Check: 45", "45"),
        ("Adding 3 and 4 gives 7, so the answer is 7.", "7"),
        ("I see 3 cats and 2 dogs", None),
        ("no number here", None),
        ("", None),
    ],
)
def test_number(reply, expected):
    assert parse_number(reply) == expected


def test_numbers_in_keeps_order_and_skips_digits_inside_words():
    assert numbers_in("v2 has 3 parts and 1,500 bolts, 2.5 kg") == ["3", "1500", "2.5"]


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("I can see a cat on the bed.", "yes"),
        ("I don't see any cat.", "no"),
        ("I cannot find a dog in this picture.", "no"),
        ("The image shows a red bus.", "yes"),
        ("The picture does not contain a bus.", "no"),
    ],
)
def test_yes_no_statements(reply, expected):
    assert parse_yes_no(reply) == expected
