"""Argument checks shared by the layers: ValueErrors that echo the value received."""

import math
import numbers


def _check_number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Expected a finite number for `{name}`. Received: {name}={value!r}")
    return float(value)


def check_nonnegative(name, value):
    value_f = _check_number(name, value)
    if value_f < 0:
        raise ValueError(f"Expected `{name}` >= 0. Received: {name}={value!r}")
    return value_f


def check_positive(name, value):
    value_f = _check_number(name, value)
    if value_f <= 0:
        raise ValueError(f"Expected `{name}` > 0. Received: {name}={value!r}")
    return value_f


def check_unit_interval(name, value):
    value_f = _check_number(name, value)
    if not 0 <= value_f < 1:
        raise ValueError(f"Expected `{name}` in [0, 1). Received: {name}={value!r}")
    return value_f


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"Expected a bool for `{name}`. Received: {name}={value!r}")
    return value
