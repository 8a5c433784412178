"""The contract every model implements: a batched :class:`AtomGraph` in, per-atom energies out."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .graph import AtomGraph

MAX_Z = 118


def check_number(
    value: Any,
    name: str,
    kind: type = float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    inclusive: bool = True,
    unit: str = "",
    error: type[Exception] = ValueError,
) -> Any:
    """``value`` as a plain ``kind`` (``int``, ``float`` or ``bool``) once checked, else ``error``
    naming ``name``, what is allowed and the bad value.

    ``int``: an integer, not a bool; ``float``: an int or float (not a bool), finite; ``bool``:
    True or False. ``minimum`` and ``maximum`` bound the value, both inclusively or both strictly
    (``inclusive``); ``unit`` (e.g. ``"Å"``) is shown in the message.
    """
    if minimum == 0 and maximum is None:
        bound = "positive" if not inclusive else "non-negative"
    elif minimum is not None and maximum is not None:
        bound = f"in {'[' if inclusive else '('}{minimum}, {maximum}{']' if inclusive else ')'}"
    elif minimum is not None or maximum is not None:
        bound = f"{'>' if minimum is not None else '<'}{'=' if inclusive else ''} {minimum if maximum is None else maximum}"
    else:
        bound = ""
    if kind is bool:
        ok, what = isinstance(value, bool), "True or False"
    elif kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        what = f"an integer {bound}".strip()
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        what = f"{bound} and finite" if bound[:1].isalpha() else f"finite {bound}".strip()
    if ok and kind is not bool:
        ok = (minimum is None or (value >= minimum if inclusive else value > minimum)) and (
            maximum is None or (value <= maximum if inclusive else value < maximum)
        )
    if not ok:
        raise error(f"{name} must be {what}{f' [{unit}]' if unit else ''}, got {value!r}")
    return kind(value)


def require(config: Any, name: str, kind: type = float, *, optional: bool = False, **bounds: Any) -> None:
    """Check the config field ``name`` with :func:`check_number` (``None`` passes when ``optional``),
    storing it as a plain ``kind``; raises :class:`ConfigError` naming the config class and field."""
    value = getattr(config, name)
    if value is None and optional:
        return
    label = f"{type(config).__name__}.{name}" + (" (or None)" if optional else "")
    setattr(config, name, check_number(value, label, kind, error=ConfigError, **bounds))


@dataclass(kw_only=True)
class PotentialConfig:
    """Settings shared by every model; each architecture extends this with its own.

    Attributes:
        cutoff: radius of the neighbour graph [Å].
        elements: atomic numbers the model accepts.
        atomic_energies: reference energy of each element in ``elements`` order [eV], added to
            every atom's output; zeros when omitted.
        max_neighbors: keep only this many nearest neighbours per atom in the graph (None: all
            within the cutoff; a finite cap makes the energy discontinuous).
        enforce_max_neighbors_strictly: with a cap, keep exactly ``max_neighbors`` edges per atom
            (fairchem 1.x's default, which parity with its checkpoints needs) when True; when False,
            also keep every neighbour tied with the ``max_neighbors``-th nearest, so a shell of
            equidistant neighbours is kept whole and symmetry-equivalent atoms stay equivalent.
    """

    cutoff: float
    elements: tuple[int, ...]
    atomic_energies: tuple[float, ...] | None = None
    max_neighbors: int | None = None
    enforce_max_neighbors_strictly: bool = False

    def __post_init__(self) -> None:
        try:
            self.elements = tuple(int(z) for z in self.elements)
        except (TypeError, ValueError):
            raise ConfigError(f"elements must be a list of atomic numbers, got {self.elements!r}") from None
        if not self.elements or len(set(self.elements)) != len(self.elements):
            raise ConfigError(f"elements must be a non-empty list of distinct atomic numbers, got {self.elements}")
        if any(not 1 <= z <= MAX_Z for z in self.elements):
            raise ConfigError(f"elements must lie in 1..{MAX_Z}, got {self.elements}")
        require(self, "cutoff", float, minimum=0, inclusive=False, unit="Å")
        require(self, "max_neighbors", int, minimum=1, optional=True)
        require(self, "enforce_max_neighbors_strictly", bool)
        if self.atomic_energies is not None:
            self.atomic_energies = tuple(float(e) for e in self.atomic_energies)
            if len(self.atomic_energies) != len(self.elements):
                raise ConfigError(
                    f"atomic_energies has {len(self.atomic_energies)} values for {len(self.elements)} elements"
                )
            if not all(math.isfinite(e) for e in self.atomic_energies):
                raise ConfigError(f"atomic_energies must be finite, got {self.atomic_energies}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


class Potential(nn.Module):
    """Base class of all models.

    A subclass sets the class attributes ``architecture`` (its registry name) and ``Config`` (a
    :class:`PotentialConfig` subclass), builds its layers from a config in ``__init__`` and
    implements :meth:`forward`. Subclasses register themselves on definition, so a checkpoint can
    rebuild them from ``(architecture, config)``.

    Units: energies in eV, lengths in Å, forces in eV/Å.
    """

    architecture: ClassVar[str]
    Config: ClassVar[type[PotentialConfig]] = PotentialConfig
    #: True when :meth:`forward` returns forces from a direct head instead of relying on autograd.
    direct_forces: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "architecture" in cls.__dict__:
            from .registry import register_architecture

            register_architecture(cls)

    def __init__(self, config: PotentialConfig) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise ConfigError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        #: free-form metadata; filled from the file when loaded from a checkpoint
        self.metadata: dict[str, Any] = {}
        species = torch.full((MAX_Z + 1,), -1, dtype=torch.long)
        species[list(config.elements)] = torch.arange(len(config.elements))
        self.register_buffer("species_of_z", species, persistent=False)
        # the network's precision, followed by model.to(dtype): an empty tensor that .to() converts
        self.register_buffer("_precision", torch.empty(0), persistent=False)
        energies = config.atomic_energies or (0.0,) * len(config.elements)
        self.register_buffer("atomic_energies", torch.tensor(energies, dtype=torch.float64))

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Potential:
        """``nn.Module._apply`` (behind ``.to``, ``.double()``, ``.cuda()``) keeping ``atomic_energies``
        in float64: reference energies of thousands of eV must not be rounded to the network's float32."""
        energies = self._buffers.pop("atomic_energies")
        try:
            super()._apply(fn, recurse)
        finally:
            self._buffers["atomic_energies"] = energies
        self._buffers["atomic_energies"] = energies.to(device=fn(energies).device)
        return self

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the network (set with ``model.to(dtype)``)."""
        return self._precision.dtype

    @property
    def device(self) -> torch.device:
        """Device of the network (set with ``model.to(device)``)."""
        return self._precision.device

    @property
    def cutoff(self) -> float:
        """Graph radius [Å]."""
        return float(self.config.cutoff)

    @property
    def elements(self) -> tuple[int, ...]:
        """Supported atomic numbers."""
        return self.config.elements

    def species(self, numbers: Tensor) -> Tensor:
        """Map atomic numbers ``(n_atoms,)`` to indices into ``elements`` ``(n_atoms,)``.

        Raises:
            ValueError: an atomic number the model does not support (named, with the supported ones).
        """
        species = self.species_of_z[numbers.clamp(0, MAX_Z)]
        unknown = (species < 0) | (numbers != numbers.clamp(0, MAX_Z))
        if bool(unknown.any()):
            name = self.metadata.get("name", self.architecture)
            raise ValueError(
                f"model {name!r} does not know atomic number(s) {sorted(set(numbers[unknown].tolist()))}; "
                f"it supports {list(self.elements)}"
            )
        return species

    def with_reference_energies(self, graph: AtomGraph, energies: Tensor) -> Tensor:
        """Per-atom energies ``(n_atoms,)`` [eV]: the network's ``energies`` plus each atom's reference
        energy, summed in the geometry's dtype (``graph.positions``), whatever the network's precision,
        from the reference energies kept in float64."""
        dtype = graph.positions.dtype
        return energies.to(dtype) + self.atomic_energies.to(dtype)[self.species(graph.numbers)]

    def relative_to_isolated(self, graph: AtomGraph, node_outputs: Callable[[AtomGraph], Tensor]) -> Tensor:
        """Per-atom energies ``(n_atoms,)`` [eV] from a network's raw per-atom outputs.

        E_i = f(graph)_i - f(isolated Z_i) + E_ref(Z_i): the network ``node_outputs`` is also run on
        one isolated atom (no edges) of each element and its output subtracted, so an atom with no
        neighbours has its reference energy. For such an atom the difference is zero in exact
        arithmetic and is set to exactly zero (a float32 network would leave ~1e-8 eV of rounding,
        as its matrix products round differently for batches of different sizes).
        """
        n = len(self.elements)
        isolated = AtomGraph(
            positions=graph.positions.new_zeros((n, 3)),
            numbers=torch.tensor(self.elements, device=graph.numbers.device),
            cell=graph.cell.new_zeros((n, 3, 3)),
            pbc=torch.zeros((n, 3), dtype=torch.bool, device=graph.pbc.device),
            batch=torch.arange(n, device=graph.batch.device),
            edge_index=graph.edge_index.new_zeros((2, 0)),
            shifts=graph.shifts.new_zeros((0, 3)),
            dtype=graph.dtype,
        )
        relative = node_outputs(graph) - node_outputs(isolated)[self.species(graph.numbers)]
        bonded = torch.zeros_like(graph.numbers, dtype=torch.bool).index_fill_(0, graph.edge_index[0], True)
        relative = torch.where(bonded, relative, torch.zeros_like(relative))
        return self.with_reference_energies(graph, relative)

    def forward(self, graph: AtomGraph) -> dict[str, Tensor]:
        """Evaluate the model.

        Returns:
            ``{"energies": (n_atoms,) [eV]}``, plus ``"forces": (n_atoms, 3) [eV/Å]`` for models
            with ``direct_forces``.
        """
        raise NotImplementedError
