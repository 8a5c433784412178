"""The learning rate: a linear warm-up, then a cosine decay, a drop on plateaus, or a constant.

lr(step) = lr_peak * f, with f = step / warmup_steps during warm-up and, after it,
cosine: f = r + (1 - r) (1 + cos(pi t)) / 2 with t the fraction of post-warm-up steps done and r
``min_lr_ratio`` (Loshchilov & Hutter, SGDR, arXiv:1608.03983); plateau: f is multiplied by
``plateau_factor`` whenever the validation loss has not improved for ``plateau_patience`` epochs,
down to r; constant: f = 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .config import OptimizerSection


class LearningRate:
    """Sets the learning rate of an optimizer before every step; its state goes into resume checkpoints."""

    def __init__(self, optimizer: torch.optim.Optimizer, settings: OptimizerSection, steps_per_epoch: int,
                 epochs: int) -> None:
        self.optimizer = optimizer
        self.settings = settings
        self.warmup_steps = settings.warmup_epochs * steps_per_epoch
        self.total_steps = epochs * steps_per_epoch
        self.plateau_scale = 1.0
        self.best_loss = math.inf
        self.bad_epochs = 0

    def factor(self, step: int) -> float:
        """The fraction of the peak rate at optimizer step ``step`` (0-based)."""
        s = self.settings
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if s.schedule == "cosine":
            t = (step - self.warmup_steps) / max(1.0, self.total_steps - self.warmup_steps)
            return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if s.schedule == "plateau":
            return self.plateau_scale
        return 1.0

    def set(self, step: int) -> float:
        """Set the rate for optimizer step ``step``; returns it."""
        lr = self.settings.lr * self.factor(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def end_epoch(self, validation_loss: float) -> None:
        """Record an epoch's validation loss (the plateau schedule acts on it)."""
        if validation_loss < self.best_loss:
            self.best_loss, self.bad_epochs = validation_loss, 0
            return
        self.bad_epochs += 1
        if self.settings.schedule == "plateau" and self.bad_epochs > self.settings.plateau_patience:
            self.plateau_scale = max(self.settings.min_lr_ratio, self.plateau_scale * self.settings.plateau_factor)
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_scale": self.plateau_scale, "best_loss": self.best_loss, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_scale, self.best_loss, self.bad_epochs = state["plateau_scale"], state["best_loss"], state["bad_epochs"]
