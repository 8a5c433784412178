"""Look-up tables: architectures by name (to rebuild checkpoints) and ready-to-use named models."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .base import Potential

_ARCHITECTURES: dict[str, type[Potential]] = {}
_MODELS: dict[str, tuple[Callable[[], Potential], str]] = {}
_CARDS: dict[str, dict[str, Any]] = {}


def register_architecture(cls: type[Potential]) -> None:
    """Record a :class:`Potential` subclass under its ``architecture`` name."""
    if cls.architecture in _ARCHITECTURES and _ARCHITECTURES[cls.architecture] is not cls:
        raise ConfigError(f"architecture {cls.architecture!r} is already registered")
    _ARCHITECTURES[cls.architecture] = cls


def architectures() -> list[str]:
    """Names of all registered architectures."""
    return sorted(_ARCHITECTURES)


def build(architecture: str, config: dict[str, Any]) -> Potential:
    """Build a model of a registered architecture from a plain-dict config."""
    if architecture not in _ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}; known: {', '.join(architectures())}")
    cls = _ARCHITECTURES[architecture]
    try:
        cfg = cls.Config(**config)
    except TypeError as err:
        raise ConfigError(f"invalid config for {architecture!r}: {err}") from None
    return cls(cfg)


def register_model(name: str, factory: Callable[[], Potential], description: str,
                   card: dict[str, Any] | None = None) -> None:
    """Make a ready model (parameters or shipped weights) available by ``name``, with a one-line
    ``description`` and, for trained models, a model ``card`` (data, elements, accuracy, cost, limits)."""
    _MODELS[name] = (factory, description)
    if card is not None:
        _CARDS[name] = card


def model_card(name: str) -> dict[str, Any] | None:
    """The model card of a registered model (None for models without one); :class:`ConfigError` for an
    unknown name."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available_models()) or 'none'}")
    return _CARDS.get(name)


def available_models() -> dict[str, str]:
    """Named models and their one-line descriptions."""
    return {name: desc for name, (_, desc) in sorted(_MODELS.items())}


def load_model(name: str) -> Potential:
    """Build the named model (``model.metadata["name"]`` is ``name``); raises :class:`ConfigError` for an
    unknown name."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available_models()) or 'none'}")
    model = _MODELS[name][0]()
    model.metadata.setdefault("name", name)
    return model
