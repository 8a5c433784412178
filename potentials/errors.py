"""Exceptions raised by the potentials package."""


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, of another format or version, or does not match its model."""


class ConfigError(ValueError):
    """A model configuration names an unknown architecture or holds an invalid value."""
