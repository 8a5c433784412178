"""Argument types for the command line: numbers checked against their range as they are parsed.

Each returns a function for ``argparse``'s ``type=``; a value out of range, NaN or infinite is
refused with a message that gives the expected range, the unit and the value given, which
``argparse`` prefixes with the flag.

    >>> positive_float("fs")("0.5")
    0.5
    >>> positive_float("fs")("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a finite number > 0 [fs], got '-1'
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", int, float)


def _checked(parse: Callable[[str], T], expected: str, accept: Callable[[T], bool]) -> Callable[[str], T]:
    """A ``type=`` function: ``parse`` the text, then refuse it unless ``accept`` holds."""

    def check(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return check


def finite_float(unit: str) -> Callable[[str], float]:
    """A finite number of any sign, in ``unit``."""
    return _checked(float, f"a finite number [{unit}]", math.isfinite)


def positive_float(unit: str) -> Callable[[str], float]:
    """A finite number > 0, in ``unit``."""
    return _checked(float, f"a finite number > 0 [{unit}]", lambda x: math.isfinite(x) and x > 0)


def non_negative_float(unit: str) -> Callable[[str], float]:
    """A finite number >= 0, in ``unit``."""
    return _checked(float, f"a finite number >= 0 [{unit}]", lambda x: math.isfinite(x) and x >= 0)


def positive_int(unit: str) -> Callable[[str], int]:
    """An integer >= 1 counting ``unit``."""
    return _checked(int, f"an integer >= 1 [{unit}]", lambda n: n >= 1)


def non_negative_int(unit: str) -> Callable[[str], int]:
    """An integer >= 0 counting ``unit``."""
    return _checked(int, f"an integer >= 0 [{unit}]", lambda n: n >= 0)


def existing_file(text: str) -> str:
    """The path of a file that exists."""
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


def atom_indices(text: str) -> list[int]:
    """Comma-separated atom indices counted from 0 (``0`` or ``0,1``)."""
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        indices = []
    if not indices or min(indices) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated atom indices such as 0 or 0,1, got {text!r}")
    return indices


def device(text: str) -> str:
    """``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``, as the calculator takes it
    (:func:`equicalc.models.resolve_device`: also refuses a CUDA device this machine lacks)."""
    from equicalc.models import resolve_device

    try:
        resolve_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("device ")) from None
    return text


def add_model_arguments(parser: argparse.ArgumentParser, default_model: str | None = None) -> None:
    """The flags every command that evaluates a model shares: ``--model``, ``--device`` and ``--dtype``."""
    parser.add_argument("--model", default=default_model, required=default_model is None,
                        help="a shipped potential (see 'equicalc models'), an equicalc checkpoint or an official "
                             "fairchem EquiformerV2 checkpoint" + (" (default: %(default)s)" if default_model else ""))
    parser.add_argument("--device", type=device, default="auto",
                        help="'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available) (default: %(default)s)")
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"),
                        help="precision of the network; geometry is float64 either way (default: %(default)s)")
