"""The training configuration: one YAML file, every key documented here and in ``equicalc train --example``.

A config has five sections, each a dataclass below; a key left out takes its default::

    model:     {architecture: sake, dtype: float32, config: {cutoff: 5.0, hidden: 64}}
    data:      {train: {path: data/emt-oc.db, select: split=train}, validation: {...}}
    loss:      {energy_weight: 1.0, forces_weight: 10.0}
    optimizer: {lr: 0.001, ...}
    training:  {epochs: 50, batch_size: 8, output: runs/sake, ...}

Keys that are not known, values of the wrong type and values out of range raise :class:`ConfigError`
naming the key, before any data is read.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from potentials import ConfigError, architectures


def doc(text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field whose documentation ``text`` the example config prints."""
    if isinstance(default, (dict, list)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"doc": text}, **kwargs)
    return field(default=default, metadata={"doc": text}, **kwargs)


@dataclass
class DataSource:
    """One labelled data set."""

    path: str = doc("file of labelled frames: an ASE database (.db) or any file ase.io.read reads (extxyz, traj, ...)")
    select: str = doc("for a database: an ase.db query (e.g. 'split=train'); for other files: "
                      "an ase.io index (e.g. ':' or '0:1000')", "")
    max_frames: int | None = doc("use a random subset of at most this many of the selected frames, drawn with "
                                 "training.seed (to fit a compute budget); null: all", None)


@dataclass
class ModelSection:
    """The model to train."""

    architecture: str = doc("one of the architectures in potentials/ (sake, egnn, equiformer_v2, lennard_jones)", "sake")
    config: dict = doc("the architecture's config keys (see its Config class); 'elements' defaults to the elements "
                       "of the training data; a value 'auto' for avg_num_neighbors / avg_degree / avg_num_nodes "
                       "is measured on the training data", {})
    dtype: str = doc("precision of the network: float32 or float64 (geometry is float64 always)", "float32")
    reference_energies: Any = doc("per-element energies E0 added to every atom [eV]: 'fit' (least squares on the "
                                  "training energies, before training), 'zero', or a mapping symbol -> eV", "fit")
    init_from: str | None = doc("start from the weights of this checkpoint or named model (fine-tuning) instead "
                                "of random ones; its architecture and config are used, 'config' is ignored", None)


@dataclass
class DataSection:
    """Where the labelled frames are and which keys hold the labels."""

    train: DataSource = doc("training frames", None)
    validation: DataSource | None = doc("validation frames (metrics every epoch); omitted: a random "
                                        "'validation_fraction' of the training frames", None)
    validation_fraction: float = doc("fraction of the training frames held out when 'validation' is omitted", 0.05)
    energy_key: str = doc("name of the total energy label [eV] (a calculator result, an info key or a "
                          "database key)", "energy")
    forces_key: str = doc("name of the forces label [eV/Å] (a calculator result or a per-atom array)", "forces")
    stress_key: str | None = doc("name of the stress label [eV/Å³], Voigt or 3x3, ASE's sign; frames without it "
                                 "add no stress loss; null: never use stress", "stress")
    free_atoms_only: bool = doc("force loss and force metrics over atoms not fixed by FixAtoms (as OC20)", True)


@dataclass
class LossSection:
    """The training loss: weights times mean errors over the global batch."""

    energy_weight: float = doc("weight of the energy-per-atom error [1/(eV/atom)²]", 1.0)
    forces_weight: float = doc("weight of the force-component error [1/(eV/Å)²]", 10.0)
    stress_weight: float = doc("weight of the stress-component error [1/(eV/Å³)²] (frames with stress only)", 0.0)
    kind: str = doc("'mse' or 'huber' (quadratic within 'huber_delta', linear beyond)", "mse")
    huber_delta: float = doc("the Huber loss's crossover, in each term's unit", 0.01)


@dataclass
class OptimizerSection:
    """AdamW and the learning-rate schedule."""

    lr: float = doc("peak learning rate", 1e-3)
    weight_decay: float = doc("AdamW's decoupled weight decay", 0.0)
    betas: list = doc("AdamW's (beta1, beta2)", [0.9, 0.999])
    schedule: str = doc("after warm-up: 'cosine' (to min_lr_ratio * lr at the last epoch), 'plateau' (multiply "
                        "by plateau_factor when the validation loss has not improved for plateau_patience epochs) "
                        "or 'constant'", "cosine")
    warmup_epochs: float = doc("linear warm-up from 0 to lr over this many epochs (fractions allowed)", 1.0)
    min_lr_ratio: float = doc("cosine: the final learning rate as a fraction of lr; plateau: the lowest", 0.01)
    plateau_patience: int = doc("plateau: epochs without improvement before the rate drops", 5)
    plateau_factor: float = doc("plateau: the factor the rate is multiplied by", 0.5)
    clip_grad_norm: float | None = doc("clip the gradient's global norm to this; null: no clipping", 10.0)
    ema_decay: float | None = doc("decay of the exponential moving average of the weights, per step; the EMA "
                                  "weights are validated and saved; null: no EMA", 0.99)


@dataclass
class TrainingSection:
    """The loop, its outputs and where it runs."""

    epochs: int = doc("passes over the training frames", 50)
    batch_size: int = doc("frames per optimizer step (the global batch: split across processes under torchrun)", 8)
    seed: int = doc("seeds the model's initial weights, the validation split and the order of the frames", 0)
    output: str = doc("directory for best.pt, last.pt, resume.pt, metrics.csv and the TensorBoard log", "runs/train")
    device: str = doc("'auto', 'cpu', 'cuda' or 'cuda:N' (under torchrun, CUDA ranks use cuda:LOCAL_RANK)", "auto")
    checkpoint_every: int = doc("optimizer steps between resume checkpoints (also written after every epoch)", 100)
    best_metric: str = doc("validation metric choosing best.pt: 'loss', 'energy_mae' or 'forces_mae'", "loss")
    tensorboard: bool = doc("also log to TensorBoard (needs the tensorboard package)", False)
    num_threads: int | None = doc("CPU threads for torch (null: torch's default)", None)
    progress: bool = doc("show a progress bar", True)


@dataclass
class TrainConfig:
    """A whole training run."""

    model: ModelSection = doc("the model", None)
    data: DataSection = doc("the data", None)
    loss: LossSection = doc("the loss", None)
    optimizer: OptimizerSection = doc("the optimizer and schedule", None)
    training: TrainingSection = doc("the loop", None)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is None:
                setattr(self, f.name, _SECTIONS[f.name]() if f.name != "data" else None)
        if self.data is None or self.data.train is None:
            raise ConfigError("data.train is required: the file of training frames (data: {train: {path: ...}})")
        _check(self)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML- and JSON-friendly copy."""
        return dataclasses.asdict(self)


_SECTIONS = {"model": ModelSection, "data": DataSection, "loss": LossSection, "optimizer": OptimizerSection,
             "training": TrainingSection}


def _check(cfg: TrainConfig) -> None:
    """Range checks that types alone do not catch; :class:`ConfigError` names the key."""
    def need(ok: bool, key: str, what: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"{key} must be {what}, got {value!r}")

    def finite(x: Any) -> bool:
        return isinstance(x, (int, float)) and math.isfinite(x)

    m, d, lo, o, t = cfg.model, cfg.data, cfg.loss, cfg.optimizer, cfg.training
    need(m.architecture in architectures(), "model.architecture", f"one of {architectures()}", m.architecture)
    need(m.dtype in ("float32", "float64"), "model.dtype", "'float32' or 'float64'", m.dtype)
    e0 = m.reference_energies
    need(e0 in ("fit", "zero") or isinstance(e0, dict), "model.reference_energies", "'fit', 'zero' or a mapping", e0)
    if isinstance(e0, dict):
        need(all(finite(v) for v in e0.values()), "model.reference_energies", "finite numbers [eV]", e0)
    need(0 < d.validation_fraction < 1, "data.validation_fraction", "in (0, 1)", d.validation_fraction)
    for key in ("energy_weight", "forces_weight", "stress_weight"):
        need(finite(getattr(lo, key)) and getattr(lo, key) >= 0, f"loss.{key}", "a finite number >= 0", getattr(lo, key))
    need(lo.energy_weight + lo.forces_weight + lo.stress_weight > 0, "loss weights", "not all zero",
         (lo.energy_weight, lo.forces_weight, lo.stress_weight))
    need(lo.kind in ("mse", "huber"), "loss.kind", "'mse' or 'huber'", lo.kind)
    need(finite(lo.huber_delta) and lo.huber_delta > 0, "loss.huber_delta", "a finite number > 0", lo.huber_delta)
    need(finite(o.lr) and o.lr > 0, "optimizer.lr", "a finite number > 0", o.lr)
    need(finite(o.weight_decay) and o.weight_decay >= 0, "optimizer.weight_decay", "a finite number >= 0", o.weight_decay)
    need(len(o.betas) == 2 and all(finite(b) and 0 <= b < 1 for b in o.betas), "optimizer.betas",
         "two numbers in [0, 1)", o.betas)
    need(o.schedule in ("cosine", "plateau", "constant"), "optimizer.schedule", "'cosine', 'plateau' or 'constant'",
         o.schedule)
    need(finite(o.warmup_epochs) and o.warmup_epochs >= 0, "optimizer.warmup_epochs", "a finite number >= 0",
         o.warmup_epochs)
    need(finite(o.min_lr_ratio) and 0 <= o.min_lr_ratio <= 1, "optimizer.min_lr_ratio", "in [0, 1]", o.min_lr_ratio)
    need(o.plateau_patience >= 0, "optimizer.plateau_patience", "an integer >= 0", o.plateau_patience)
    need(finite(o.plateau_factor) and 0 < o.plateau_factor < 1, "optimizer.plateau_factor", "in (0, 1)",
         o.plateau_factor)
    need(o.clip_grad_norm is None or (finite(o.clip_grad_norm) and o.clip_grad_norm > 0), "optimizer.clip_grad_norm",
         "a finite number > 0 or null", o.clip_grad_norm)
    need(o.ema_decay is None or (finite(o.ema_decay) and 0 < o.ema_decay < 1), "optimizer.ema_decay",
         "in (0, 1) or null", o.ema_decay)
    for name, source in (("train", d.train), ("validation", d.validation)):
        if source is not None:
            need(source.max_frames is None or source.max_frames >= 1, f"data.{name}.max_frames",
                 "an integer >= 1 or null", source.max_frames)
    need(t.epochs >= 1, "training.epochs", "an integer >= 1", t.epochs)
    need(t.batch_size >= 1, "training.batch_size", "an integer >= 1", t.batch_size)
    need(t.seed >= 0, "training.seed", "an integer >= 0", t.seed)
    need(t.checkpoint_every >= 1, "training.checkpoint_every", "an integer >= 1", t.checkpoint_every)
    need(t.best_metric in ("loss", "energy_mae", "forces_mae"), "training.best_metric",
         "'loss', 'energy_mae' or 'forces_mae'", t.best_metric)
    need(t.num_threads is None or t.num_threads >= 1, "training.num_threads", "an integer >= 1 or null", t.num_threads)


def from_dict(raw: Any, cls: type = TrainConfig, where: str = "") -> Any:
    """Build ``cls`` (a config dataclass) from plain data, checking keys and types.

    Raises:
        ConfigError: an unknown key (the known ones are listed), a value of the wrong type, or a
            range check of :func:`_check` (each names the key).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where.rstrip('.') or 'the config'} must be a mapping of keys to values, got {raw!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + k for k in unknown)}; known: {', '.join(sorted(names))}")
    values = {}
    for name, value in raw.items():
        values[name] = _convert(value, hints[name], f"{where}{name}")
    try:
        return cls(**values)
    except TypeError as err:  # a required key left out
        raise ConfigError(f"{where.rstrip('.') or 'config'}: {err}") from None


def _convert(value: Any, hint: Any, key: str) -> Any:
    """``value`` as the type ``hint`` says, or :class:`ConfigError` naming ``key``."""
    if dataclasses.is_dataclass(hint):
        if value is None and hint is DataSource:
            raise ConfigError(f"{key} is required: {{path: FILE, select: QUERY}}")
        return from_dict(value, hint, key + ".")
    options = get_args(hint) if get_origin(hint) in (types.UnionType, typing.Union) else ()
    if options:
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _convert(value, inner[0], key)
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, bool, str, dict, list) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{key} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a YAML training config.

    Raises:
        OSError: the file cannot be read.
        ConfigError: malformed YAML or any problem :func:`from_dict` finds.
    """
    import yaml

    text = Path(path).read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    return from_dict(raw if raw is not None else {})


def example_yaml() -> str:
    """A complete config with every key, its default and its documentation as comments."""
    lines = ["# equicalc train config: every key with its default; see README 'Training'"]
    for section in dataclasses.fields(TrainConfig):
        cls = _SECTIONS[section.name]
        lines += ["", f"# {cls.__doc__.strip()}", f"{section.name}:"]
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if dataclasses.is_dataclass(get_type_hints(cls)[f.name]) or f.name in ("train", "validation"):
                lines.append(f"  # {f.metadata['doc']}")
                lines.append(f"  {f.name}:")
                for g in dataclasses.fields(DataSource):
                    lines.append(f"    # {g.metadata['doc']}")
                    lines.append(f"    {g.name}: {_yaml_value(_example_source(f.name, g.name))}")
                continue
            lines.append(f"  # {f.metadata['doc']}")
            lines.append(f"  {f.name}: {_yaml_value(default)}")
    return "\n".join(lines) + "\n"


def _example_source(which: str, key: str) -> str | None:
    return {"path": "data/emt-oc.db", "select": "split=train" if which == "train" else "split=val",
            "max_frames": None}[key]


def _yaml_value(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").removesuffix("...").strip()
