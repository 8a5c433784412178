"""The training loop: energy, force and stress loss, AdamW, EMA, validation, checkpoints and exact resume.

Outputs in ``training.output``:
    best.pt, last.pt: equicalc checkpoints of the validated (EMA) weights, loadable by path anywhere
        (``EquiCalculator("runs/x/best.pt")``);
    resume.pt: everything needed to continue bit for bit (weights, EMA, optimizer, schedule, position
        in the epoch), written atomically every ``checkpoint_every`` steps and after every epoch;
    metrics.csv: one line per epoch; tensorboard/: the same, when asked for.

A run whose output directory holds ``resume.pt`` continues from it: the order of frames in an epoch
is a function of (seed, epoch) only, so a run killed anywhere and resumed takes the same steps as one
never interrupted, and ends with the same weights and metrics.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from equicalc import predict
from equicalc.models import resolve_device
from potentials import ConfigError, Potential, build, load_potential, save_checkpoint
from potentials.nn import default_dtype

from . import distributed
from .config import LossSection, TrainConfig
from .frames import Frame, check_frames, elements_of, read_frames, reference_energies_from
from .loss import ErrorSums, Targets, batch_of, compare, metrics
from .schedule import LearningRate
from .statistics import average_atoms, average_neighbors, describe_reference_energies, fit_reference_energies

#: config keys of the architectures that 'auto' fills from the training data
_AUTO_NEIGHBORS = ("avg_num_neighbors", "avg_degree")
_AUTO_ATOMS = ("avg_num_nodes",)
#: sections that must not change between a run and its resumption
_FIXED_ON_RESUME = ("model", "data", "loss", "optimizer")

CSV_COLUMNS = ["epoch", "step", "lr", "train_loss", "val_loss", "val_energy_mae_meV_per_atom",
               "val_forces_mae_meV_per_A", "val_forces_cos", "val_stress_mae_meV_per_A3", "seconds"]


@dataclass
class TrainResult:
    """What a finished run produced: the checkpoint paths and the metrics of the last epoch."""

    best: Path
    last: Path
    metrics: dict[str, float]
    epochs: int
    seconds: float


def ema_update(decay: float) -> Any:
    """The EMA step for ``AveragedModel``: w_ema <- d w_ema + (1 - d) w with d = min(decay, (1 + n) / (10 + n))
    after n updates (the warm-up of TensorFlow's ExponentialMovingAverage), so that the average forgets the
    random initial weights within the first tens of steps instead of 1 / (1 - decay) of them."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor | int) -> None:
        d = min(decay, (1 + int(n)) / (10 + int(n)))
        torch._foreach_lerp_(averaged, current, 1 - d)

    return update


def subset(frames: list[Frame], size: int | None, seed: int) -> list[Frame]:
    """A seeded random subset of at most ``size`` frames, in their original order (all when ``size`` is None)."""
    if size is None or size >= len(frames):
        return frames
    chosen = np.random.default_rng([seed, len(frames)]).choice(len(frames), size=size, replace=False)
    return [frames[i] for i in sorted(chosen)]


def split_validation(frames: list[Frame], fraction: float, seed: int) -> tuple[list[Frame], list[Frame]]:
    """A seeded random ``fraction`` of ``frames`` (at least one) for validation, the rest for training."""
    order = np.random.default_rng(seed).permutation(len(frames))
    n_val = max(1, round(fraction * len(frames)))
    if n_val >= len(frames):
        raise ConfigError(f"{len(frames)} training frame(s) are too few to hold out a validation set")
    return [frames[i] for i in sorted(order[n_val:])], [frames[i] for i in sorted(order[:n_val])]


def load_data(cfg: TrainConfig, elements: tuple[int, ...] | None) -> tuple[list[Frame], list[Frame]]:
    """Read and check the training and validation frames (:class:`frames.DataError` names bad frames)."""
    d = cfg.data
    keys = {"energy_key": d.energy_key, "forces_key": d.forces_key, "stress_key": d.stress_key}
    train = subset(read_frames(d.train.path, d.train.select, **keys), d.train.max_frames, cfg.training.seed)
    if d.validation is None:
        train, validation = split_validation(train, d.validation_fraction, cfg.training.seed)
    else:
        validation = read_frames(d.validation.path, d.validation.select, **keys)
        validation = subset(validation, d.validation.max_frames, cfg.training.seed)
    known = elements or elements_of(train + validation)
    for frames, what in ((train, "training"), (validation, "validation")):
        check_frames(frames, known, what, energy_key=d.energy_key, forces_key=d.forces_key)
    return train, validation


def build_model(cfg: TrainConfig, train: list[Frame]) -> Potential:
    """The model to train, in ``model.dtype``: from a checkpoint (``init_from``) or built from the config
    with its elements, reference energies and 'auto' statistics taken from the training frames."""
    m = cfg.model
    dtype = torch.float64 if m.dtype == "float64" else torch.float32
    if m.init_from:
        return load_potential(m.init_from).to(dtype)
    config = dict(m.config)
    elements = tuple(config.get("elements") or elements_of(train))
    config["elements"] = list(elements)
    if m.reference_energies == "fit":
        config["atomic_energies"] = list(fit_reference_energies(train, elements))
    elif isinstance(m.reference_energies, dict):
        config["atomic_energies"] = list(reference_energies_from(m.reference_energies, elements))
    for key, value in list(config.items()):
        if value == "auto" and key in _AUTO_NEIGHBORS:
            if "cutoff" not in config:
                raise ConfigError(f"model.config.{key}: 'auto' needs model.config.cutoff")
            config[key] = average_neighbors(train, float(config["cutoff"]))
        elif value == "auto" and key in _AUTO_ATOMS:
            config[key] = average_atoms(train)
        elif value == "auto":
            raise ConfigError(f"model.config.{key}: 'auto' is only understood for "
                              f"{', '.join(_AUTO_NEIGHBORS + _AUTO_ATOMS)}")
    return seeded_build(m.architecture, config, dtype, cfg.training.seed)


def seeded_build(architecture: str, config: dict[str, Any], dtype: torch.dtype, seed: int) -> Potential:
    """The model drawn from ``seed``, its weights created directly in ``dtype``."""
    torch.manual_seed(seed)
    with default_dtype(dtype):
        return build(architecture, config).to(dtype)


class Trainer:
    """One training run (see the module docstring); ``Trainer(cfg).run()`` does all of it."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        t = cfg.training
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        device = resolve_device(t.device)
        self.processes = distributed.start(device.type)
        if device.type == "cuda" and self.processes.world_size > 1:
            device = torch.device("cuda", self.processes.local_rank)
        self.device = device
        self.output = Path(t.output)
        self.resume_path = self.output / "resume.pt"
        state = self._read_resume_state()
        given = cfg.model.config.get("elements")
        self.train_frames, self.val_frames = load_data(cfg, tuple(given) if given else None)
        if state is not None:  # the model as the run built it (fitted E0s, measured statistics)
            dtype = torch.float64 if cfg.model.dtype == "float64" else torch.float32
            self.model = seeded_build(state["architecture"], state["model_config"], dtype, t.seed)
        else:
            self.model = build_model(cfg, self.train_frames)
        check_frames(self.train_frames + self.val_frames, self.model.elements, "training/validation")
        self.model.to(self.device).train()
        self.processes.broadcast_parameters(self.model)
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        o = cfg.optimizer
        self.optimizer = torch.optim.AdamW(self.parameters, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.train_frames) / t.batch_size)
        self.lr = LearningRate(self.optimizer, o, self.steps_per_epoch, t.epochs)
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_update(o.ema_decay)) if o.ema_decay else None
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best, self.history, self.elapsed = math.inf, [], 0.0
        self.train_sums = None
        if state is not None:
            self._restore(state)
        self.stress = cfg.loss.stress_weight > 0 and any(f.stress is not None for f in self.train_frames)

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        """Train to ``training.epochs``, validating and checkpointing; returns the final checkpoints."""
        t = self.cfg.training
        if self.processes.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            self._describe()
        writer = self._tensorboard()
        try:
            while self.epoch < t.epochs:
                train_loss = self._train_epoch()
                started = time.perf_counter()
                val = self.validate(self.val_frames)
                self.lr.end_epoch(val["loss"])
                self.elapsed += time.perf_counter() - started
                row = self._log(train_loss, val, writer)
                self.epoch, self.step_in_epoch = self.epoch + 1, 0
                improved = val[t.best_metric] < self.best
                self.best = min(self.best, val[t.best_metric])
                if self.processes.is_main:
                    self._save_models(row, improved)
                    self._save_resume_state()
        finally:
            if writer is not None:
                writer.close()
        self.processes.barrier()
        last = self.history[-1] if self.history else {}
        return TrainResult(self.output / "best.pt", self.output / "last.pt", last, self.epoch, self.elapsed)

    def _order(self, epoch: int) -> list[int]:
        """The frames of ``epoch`` in training order: a function of (seed, epoch) only."""
        generator = torch.Generator().manual_seed(self.cfg.training.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train_frames), generator=generator).tolist()

    def _train_epoch(self) -> float:
        """Optimizer steps from the current position to the end of the epoch; the epoch's mean loss."""
        t = self.cfg.training
        order = self._order(self.epoch)
        batches = [order[k:k + t.batch_size] for k in range(0, len(order), t.batch_size)]
        if self.train_sums is None or self.step_in_epoch == 0:
            self.train_sums = torch.zeros(2, dtype=torch.float64)  # sum of batch losses, batches
        bar = self._progress(len(batches), self.step_in_epoch)
        for k in range(self.step_in_epoch, len(batches)):
            started = time.perf_counter()
            loss = self.train_step([self.train_frames[i] for i in batches[k]])
            self.elapsed += time.perf_counter() - started
            self.train_sums += torch.tensor([loss, 1.0], dtype=torch.float64)
            self.step_in_epoch, self.global_step = k + 1, self.global_step + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
            if self.global_step % t.checkpoint_every == 0 and k + 1 < len(batches) and self.processes.is_main:
                self._save_resume_state()
        if bar is not None:
            bar.close()
        return float(self.train_sums[0] / self.train_sums[1].clamp(min=1))

    def local_share(self, frames: list[Frame]) -> list[Frame]:
        """This process's frames of a global batch."""
        return frames[self.processes.rank::self.processes.world_size]

    def loss_and_gradients(self, frames: list[Frame]) -> float:
        """The loss of the global batch ``frames`` with its gradient summed into the parameters' ``.grad``
        over all processes (each evaluating :meth:`local_share`); returns the loss."""
        weights, free_only = self.cfg.loss, self.cfg.data.free_atoms_only
        share = self.local_share(frames)
        targets = Targets.of(share, self.device, free_only)
        counts = self.processes.sum(targets.counts().clone())
        for p in self.parameters:
            p.grad = None
        if share:
            prediction = predict(self.model, batch_of(share, self.device), stress=self.stress, create_graph=True)
            loss = compare(prediction, targets, weights).loss(weights, counts)
            loss.backward(inputs=self.parameters)  # not into the positions: a leaf of no use here
            value = loss.detach().to(torch.float64).reshape(1)
        else:
            value = torch.zeros(1, dtype=torch.float64)
        self.processes.sum_gradients(self.parameters)
        return float(self.processes.sum(value))

    def train_step(self, frames: list[Frame]) -> float:
        """One optimizer step on the global batch ``frames``: loss, gradients, clipping, AdamW, EMA."""
        o = self.cfg.optimizer
        self.lr.set(self.global_step)
        loss = self.loss_and_gradients(frames)
        if not math.isfinite(loss):
            raise FloatingPointError(f"the training loss became {loss} at epoch {self.epoch} step "
                                     f"{self.step_in_epoch}; lower optimizer.lr or check the data")
        if o.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.parameters, o.clip_grad_norm)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss

    def validated_model(self) -> Potential:
        """The weights that are validated and saved: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def validate(self, frames: list[Frame]) -> dict[str, float]:
        """Metrics of :meth:`validated_model` on ``frames`` (see :func:`loss.metrics`), over all processes."""
        model = self.validated_model()
        was_training = model.training
        model.eval()
        sums = evaluate_sums(model, self.local_share(frames), self.device, batch_size=self.cfg.training.batch_size,
                             free_atoms_only=self.cfg.data.free_atoms_only, weights=self.cfg.loss, stress=self.stress)
        model.train(was_training)
        return metrics(self.processes.sum(sums), self.cfg.loss)

    # ------------------------------------------------------------------ files
    def _state(self) -> dict[str, Any]:
        return {
            "format": "equicalc-training-state", "config": self.cfg.to_dict(),
            "architecture": self.model.architecture, "model_config": self.model.config.to_dict(),
            "model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(), "lr": self.lr.state_dict(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "train_sums": self.train_sums, "best": self.best, "history": self.history, "elapsed": self.elapsed,
        }

    def _save_resume_state(self) -> None:
        """Write resume.pt atomically (a kill while writing leaves the previous one)."""
        partial = self.resume_path.with_suffix(".pt.partial")
        torch.save(self._state(), partial)
        os.replace(partial, self.resume_path)

    def _read_resume_state(self) -> dict[str, Any] | None:
        if not self.resume_path.exists():
            return None
        state = torch.load(self.resume_path, map_location="cpu", weights_only=True)
        saved, now = state["config"], self.cfg.to_dict()
        changed = [s for s in _FIXED_ON_RESUME if saved[s] != now[s]]
        changed += [f"training.{k}" for k in ("batch_size", "seed") if saved["training"][k] != now["training"][k]]
        if changed:
            raise ConfigError(f"{self.output} holds a run with a different {', '.join(changed)}: resume it with "
                              f"its own config, or choose another training.output (or pass --restart)")
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr.load_state_dict(state["lr"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        self.train_sums, self.best, self.history, self.elapsed = (state["train_sums"], state["best"],
                                                                   state["history"], state["elapsed"])
        if self.processes.is_main:
            print(f"resuming {self.output} at epoch {self.epoch + 1}, step {self.step_in_epoch}/{self.steps_per_epoch}")

    def _save_models(self, row: dict[str, Any], improved: bool) -> None:
        model = self.validated_model()
        summary = {"epochs": self.epoch, "steps": self.global_step, "seconds": round(self.elapsed, 1),
                   "train_frames": len(self.train_frames), "validation": {k: row[k] for k in row if k.startswith("val_")},
                   "data": self.cfg.data.train.path, "config": self.cfg.to_dict()}
        save_checkpoint(model, self.output / "last.pt", training=summary)
        if improved or not (self.output / "best.pt").exists():
            save_checkpoint(model, self.output / "best.pt", training=summary)

    def _log(self, train_loss: float, val: dict[str, float], writer: Any) -> dict[str, Any]:
        row = {"epoch": self.epoch + 1, "step": self.global_step, "lr": self.optimizer.param_groups[0]["lr"],
               "train_loss": train_loss, "val_loss": val["loss"], "val_energy_mae_meV_per_atom": val["energy_mae"],
               "val_forces_mae_meV_per_A": val["forces_mae"], "val_forces_cos": val["forces_cos"],
               "val_stress_mae_meV_per_A3": val["stress_mae"], "seconds": round(self.elapsed, 2)}
        self.history.append(row)
        if self.processes.is_main:
            with open(self.output / "metrics.csv", "w", newline="") as handle:  # rewritten: resume-safe
                out = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
                out.writeheader()
                out.writerows(self.history)
            if writer is not None:
                for key, value in row.items():
                    if key not in ("epoch", "step"):
                        writer.add_scalar(key, value, self.epoch + 1)
            print(f"epoch {row['epoch']}/{self.cfg.training.epochs}: train loss {train_loss:.4g}, val loss "
                  f"{val['loss']:.4g}, energy MAE {val['energy_mae']:.2f} meV/atom, force MAE "
                  f"{val['forces_mae']:.1f} meV/Å, force cos {val['forces_cos']:.3f}", flush=True)
        return row

    def _tensorboard(self) -> Any:
        if not (self.cfg.training.tensorboard and self.processes.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ConfigError("training.tensorboard needs the tensorboard package (pip install tensorboard)") from err
        return SummaryWriter(str(self.output / "tensorboard"))

    def _progress(self, total: int, done: int) -> Any:
        if not (self.cfg.training.progress and self.processes.is_main):
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=done, desc=f"epoch {self.epoch + 1}/{self.cfg.training.epochs}",
                    unit="batch", leave=False)

    def _describe(self) -> None:
        m = self.model
        n = sum(p.numel() for p in self.parameters)
        print(f"{m.architecture}: {n:,} parameters, {m.dtype}, on {self.device}"
              f"{f' x {self.processes.world_size} processes' if self.processes.world_size > 1 else ''}; "
              f"{len(self.train_frames)} training and {len(self.val_frames)} validation frames; "
              f"E0s {describe_reference_energies(m.elements, tuple(m.atomic_energies.tolist()))} eV", flush=True)


def evaluate_sums(model: Potential, frames: list[Frame], device: torch.device, *, batch_size: int,
                  free_atoms_only: bool, weights: LossSection, stress: bool) -> torch.Tensor:
    """Summed errors (:meth:`loss.ErrorSums.detached`) of ``model`` on ``frames``, ``batch_size`` at a time."""
    total = torch.zeros(ErrorSums.width(), dtype=torch.float64)
    for k in range(0, len(frames), batch_size):
        chunk = frames[k:k + batch_size]
        prediction = predict(model, batch_of(chunk, device), stress=stress)
        sums: ErrorSums = compare(prediction, Targets.of(chunk, device, free_atoms_only), weights)
        total += sums.detached().cpu()
    return total


def score(model: Potential, frames: list[Frame], *, batch_size: int = 8, free_atoms_only: bool = True,
          device: torch.device | str = "cpu") -> dict[str, float]:
    """Energy MAE [meV/atom], force MAE [meV/Å], force cosine and stress MAE [meV/Å³] of ``model`` on
    ``frames`` (the validation metrics, with unit loss weights), evaluated in eval mode."""
    model = model.to(device).eval()
    stress = any(f.stress is not None for f in frames)
    weights = LossSection()
    sums = evaluate_sums(model, frames, torch.device(device), batch_size=batch_size, free_atoms_only=free_atoms_only,
                         weights=weights, stress=stress)
    return metrics(sums, weights)


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) the training ``cfg`` describes; see :class:`Trainer`.

    Raises:
        ConfigError: a config problem, or an output directory holding a run of another config.
        frames.DataError: frames that cannot be trained on (all listed, by file and index).
        OSError: a data file that does not exist.
    """
    try:
        return Trainer(cfg).run()
    finally:
        distributed.stop()


def restart(cfg: TrainConfig) -> None:
    """Forget a previous run in ``training.output`` (its resume state) so that :func:`train` starts afresh."""
    path = Path(cfg.training.output) / "resume.pt"
    if path.exists():
        path.unlink()


