"""Make variables converted by the command table: every number option refuses what is not a finite number."""
import pytest

from toolbox.cli.commands import COMMANDS, OPTIONS, parse_options
from toolbox.errors import UsageError

FLOAT_OPTIONS = sorted(name for name, (kind, _) in OPTIONS.items() if kind is float)


def _command_with(option):
    return next(command for command, (_, options) in COMMANDS.items() if option in options)


@pytest.mark.parametrize("option", FLOAT_OPTIONS)
@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_float_options_refuse_non_finite_numbers(option, text):
    with pytest.raises(UsageError) as info:
        parse_options([_command_with(option)], environ={option: text})
    assert info.value.format() == f"error: {option}={text}: expected a finite number"


def test_the_float_options_are_the_expected_ones():
    assert {"interval", "initial_timeout", "idle_timeout", "grace"} <= set(FLOAT_OPTIONS)


@pytest.mark.parametrize("text, value", [("Y", True), ("off", False), (" TRUE ", True), ("0", False)])
def test_one_table_of_true_and_false_words(text, value):
    assert parse_options(["local"], environ={"fail_fast": text}).fail_fast is value
