"""Checks of config values, each paired with the words the one-line error uses for what is allowed.

A rule is ``(KEY, (check, allowed))``. ``one_of(table)`` takes the ``name -> implementation`` table
the code constructs from, so the allowed values and the implementations cannot drift apart.
"""
from typing import Any, Callable, Iterable, Tuple

Check = Tuple[Callable[[Any], bool], str]
Rule = Tuple[str, Check]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def one_of(choices: Iterable[str]) -> Check:
    allowed = tuple(choices)
    return (lambda v: v in allowed), "one of " + ", ".join(allowed)


def integer_at_least(low: int, note: str = "") -> Check:
    return (lambda v: _integer(v) and v >= low), f"an integer >= {low}" + (f" ({note})" if note else "")


def in_unit_interval(closed_right: bool = False) -> Check:
    if closed_right:
        return (lambda v: _number(v) and 0 < v <= 1), "a number in (0, 1]"
    return (lambda v: _number(v) and 0 <= v < 1), "a number in [0, 1)"


POSITIVE: Check = ((lambda v: _number(v) and v > 0), "a number > 0")
NON_NEGATIVE: Check = ((lambda v: _number(v) and v >= 0), "a number >= 0")
POSITIVE_INT: Check = ((lambda v: _integer(v) and v > 0), "an integer > 0")
