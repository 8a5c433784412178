"""Labellers: the ASE calculators that give the reference energies, forces and stress.

A labeller is named by a string, so that it can be stored in the database and rebuilt in worker
processes:

- ``"emt"``: ASE's effective-medium theory (:class:`ase.calculators.emt.EMT`), about 1 ms per
  structure; it knows only Al, Cu, Ag, Au, Ni, Pd, Pt and H, C, N, O;
- ``"sevenn"``: SevenNet-0 (``sevenn.calculator.SevenNetCalculator("7net-0")``), an optional
  dependency (``pip install sevenn``);
- ``"module:Name"``: any ASE calculator class or factory function ``Name`` in the importable
  ``module``, called with the keyword arguments given (e.g. ``"ase.calculators.emt:EMT"``).

Keyword arguments a calculator's signature does not take are refused, and those missing from an
ASE calculator's ``default_parameters`` are passed on with a warning (:func:`accepted_keywords`);
where it cannot tell (a ``**kwargs`` signature and no ``default_parameters``, as VASP's), they are
passed on as they are.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ase.calculators.calculator import BaseCalculator, Calculator
from ase.data import atomic_numbers


def emt_elements() -> frozenset[str]:
    """The elements ASE's EMT has parameters for."""
    from ase.calculators.emt import parameters

    return frozenset(parameters)


@dataclass(frozen=True)
class Labeller:
    """A named, picklable recipe for an ASE calculator.

    ``name`` is ``"emt"``, ``"sevenn"`` or ``"module:Name"``; ``kwargs`` are passed to the
    calculator's constructor; ``elements`` is the set of elements the labeller is known to cover,
    or ``None`` when it is not known (a user's calculator: the caller vouches for it).
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    elements: frozenset[str] | None = None
    directory: str | None = field(default=None, compare=False, hash=False)

    def in_directory(self, directory: str | os.PathLike) -> Labeller:
        """This recipe with its calculators working in ``directory`` (unless ``kwargs`` name one), so
        that file-based calculators (VASP, ...) of tasks running at once never share their files."""
        return replace(self, directory=str(directory))

    @property
    def key(self) -> str:
        """The name and keyword arguments as one string: two labellers with one key label alike."""
        return f"{self.name} {json.dumps(self.kwargs, sort_keys=True)}"

    def calculator(self) -> BaseCalculator:
        """A new calculator; ``ValueError`` if it cannot be built (missing package, bad arguments)."""
        factory = _factory(self.name)
        try:
            calculator = factory(**self.kwargs)
        except TypeError as err:
            raise ValueError(f"labeller {self.name!r} does not accept the keyword arguments "
                             f"{self.kwargs}: {err}") from err
        if self.directory is not None and "directory" not in self.kwargs and hasattr(calculator, "directory"):
            calculator.directory = self.directory
        return calculator


def resolve_labeller(name: str, kwargs: dict[str, Any] | str | None = None) -> Labeller:
    """The :class:`Labeller` called ``name``, with ``kwargs`` (a dict or a JSON object text).

    The calculator is built once here, so that a bad name, a missing optional package or bad
    keyword arguments raise ``ValueError`` now rather than in a worker process; keyword arguments
    the calculator is known not to take (:func:`accepted_keywords`) are refused by name.
    """
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except json.JSONDecodeError as err:
            raise ValueError(f"labeller keyword arguments are not valid JSON ({err}): {kwargs!r}") from None
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, dict):
        raise ValueError(f"labeller keyword arguments must be a JSON object, got {kwargs!r}")
    _check_keywords(name, kwargs)
    elements = emt_elements() if name == "emt" else None
    labeller = Labeller(name, dict(kwargs), elements)
    labeller.calculator()
    return labeller


def check_elements(labeller: Labeller, elements: Iterable[str]) -> frozenset[str]:
    """``elements`` as a set, checked: ``ValueError`` naming any that is not a chemical element
    or that the labeller does not cover."""
    elements = frozenset(elements)
    unknown = sorted(e for e in elements if e not in atomic_numbers or e == "X")
    if unknown:
        raise ValueError(f"not chemical elements: {', '.join(unknown)}")
    if labeller.elements is not None and not elements <= labeller.elements:
        missing = sorted(elements - labeller.elements)
        raise ValueError(f"labeller {labeller.name!r} has no parameters for {', '.join(missing)} "
                         f"(it covers {', '.join(sorted(labeller.elements))})")
    return elements


def accepted_keywords(factory: Any) -> frozenset[str] | None:
    """The keyword arguments the calculator class or function ``factory`` takes, or None when it
    cannot tell.

    A signature without ``**kwargs`` names them all. An ASE :class:`Calculator` subclass with
    ``default_parameters`` takes those, and the named arguments of the ``__init__`` of every class
    it derives from (``**kwargs`` travel up to :class:`Calculator`: ``label``, ``directory``, ...).
    Any other ``**kwargs`` signature (VASP's: it takes many, listed nowhere) cannot tell.
    """
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin or an object without a readable signature
        return None
    named = _named_parameters(parameters)
    if not _takes_any_keyword(parameters):
        return named
    if not (isinstance(factory, type) and issubclass(factory, Calculator) and factory.default_parameters):
        return None
    inherited = (_named_parameters(inspect.signature(cls.__init__).parameters.values()) - {"self"}
                 for cls in factory.__mro__ if issubclass(cls, Calculator) and "__init__" in vars(cls))
    return named.union(factory.default_parameters, *inherited)


def _named_parameters(parameters: Iterable[inspect.Parameter]) -> frozenset[str]:
    """The names of ``parameters`` that can be given by keyword."""
    return frozenset(p.name for p in parameters
                     if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


def _check_keywords(name: str, kwargs: dict[str, Any]) -> None:
    """Check ``kwargs`` against :func:`accepted_keywords` of the labeller ``name``: ``ValueError``
    naming those a signature without ``**kwargs`` does not take; a warning naming those missing
    from a ``Calculator``'s ``default_parameters`` (some calculators, QChem's or Psi4's, use more
    than they list: the keys are passed on). Raises the ``ValueError`` of :func:`_factory` too."""
    factory = _factory(name)
    accepted = accepted_keywords(factory)
    unknown = sorted(set(kwargs) - accepted) if accepted is not None else []
    if not unknown:
        return
    message = (f"labeller {name!r} does not accept the keyword arguments {', '.join(unknown)} "
               f"(it accepts {', '.join(sorted(accepted)) or 'none'})")
    if not _takes_any_keyword(inspect.signature(factory).parameters.values()):
        raise ValueError(message)
    warnings.warn(f"{message}; passed on, as the calculator takes any keyword", stacklevel=3)


def _takes_any_keyword(parameters: Iterable[inspect.Parameter]) -> bool:
    """Whether the signature ``parameters`` include ``**kwargs``."""
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _factory(name: str):
    """The class or function that builds the calculator called ``name``; ``ValueError`` if none."""
    if name == "emt":
        from ase.calculators.emt import EMT

        return EMT
    if name == "sevenn":
        try:
            from sevenn.calculator import SevenNetCalculator
        except ImportError as err:
            raise ValueError("labeller 'sevenn' needs the optional package sevenn "
                             f"(pip install sevenn): {err}") from None
        return lambda **kwargs: SevenNetCalculator(**{"model": "7net-0", **kwargs})
    module_name, sep, attribute = name.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"unknown labeller {name!r}: use 'emt', 'sevenn' or 'module:ClassName' "
                         "(e.g. 'ase.calculators.emt:EMT')")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"labeller {name!r}: cannot import module {module_name!r} ({err})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"labeller {name!r}: module {module_name!r} has no callable {attribute!r}")
    return factory
