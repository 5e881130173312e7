"""Argument checks shared by every layer, config and file format (no TensorFlow).

Each check raises `error` (ValueError unless the caller's domain has its own
exception, e.g. `CodecError`) with a message naming the argument, what was
expected and what was received, and returns the value as a plain Python type.
`bool` is refused where an int or a number is expected: `True` is an int to
Python but never a sensible size.
"""

from __future__ import annotations

import math
import numbers


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _bounds(minimum, maximum, inclusive_min=True, inclusive_max=True) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>=' if inclusive_min else '>'} {minimum}")
    if maximum is not None:
        parts.append(f"{'<=' if inclusive_max else '<'} {maximum}")
    return " and ".join(parts)


def check_int(name: str, value, minimum=None, maximum=None, *, error=ValueError) -> int:
    """`value` as an int, if it is an int within [`minimum`, `maximum`] (either bound optional).

    Example:

    >>> check_int("num_codes", 512, minimum=2)
    512
    >>> check_int("num_codes", 1, minimum=2)
    Traceback (most recent call last):
    ...
    ValueError: `num_codes` must be an int >= 2; received 1.
    """
    bounds = _bounds(minimum, maximum)
    expected = f"an int {bounds}" if bounds else "an int"
    if not is_int(value):
        raise error(f"`{name}` must be {expected}; received {value!r} of type {type(value).__name__}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise error(f"`{name}` must be {expected}; received {value}.")
    return int(value)


def check_number(
    name: str, value, minimum=None, maximum=None, *, inclusive_min=True, inclusive_max=True, error=ValueError
) -> float:
    """`value` as a finite float within the bounds (each inclusive unless said otherwise).

    Example:

    >>> check_number("decay", 0.99, minimum=0, maximum=1, inclusive_max=False)
    0.99
    >>> check_number("decay", 1.0, minimum=0, maximum=1, inclusive_max=False)
    Traceback (most recent call last):
    ...
    ValueError: `decay` must be a finite number >= 0 and < 1; received 1.0.
    """
    bounds = _bounds(minimum, maximum, inclusive_min, inclusive_max)
    expected = f"a finite number {bounds}" if bounds else "a finite number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"`{name}` must be {expected}; received {value!r} of type {type(value).__name__}.")
    number = float(value)
    if (
        not math.isfinite(number)
        or (minimum is not None and (number < minimum or (not inclusive_min and number == minimum)))
        or (maximum is not None and (number > maximum or (not inclusive_max and number == maximum)))
    ):
        raise error(f"`{name}` must be {expected}; received {number}.")
    return number


def check_choice(name: str, value, choices, *, error=ValueError):
    """`value` if it is one of `choices`."""
    if value not in choices:
        raise error(f"`{name}` must be one of {', '.join(map(repr, choices))}; received {value!r}.")
    return value


def check_bool(name: str, value, *, allow_none=False, error=ValueError):
    """`value` if it is a bool (or None, when `allow_none`); ints such as 1 are refused."""
    if isinstance(value, bool) or (allow_none and value is None):
        return value
    expected = "a bool or None" if allow_none else "a bool"
    raise error(f"`{name}` must be {expected}; received {value!r}.")


def check_known_fields(what: str, data, known, *, error=ValueError):
    """`data` (a mapping) if every key is in `known`; the error lists the unknown and the known ones.

    Example:

    >>> check_known_fields("prior config", {"kind": "pixelcnn", "colour": 1}, {"kind"})
    Traceback (most recent call last):
    ...
    ValueError: unknown prior config fields ['colour']; known fields: ['kind'].
    """
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise error(f"unknown {what} fields {unknown}; known fields: {sorted(known)}.")
    return data
