"""Train a recipe for a wall-clock budget: measure the step time, then choose the epochs that fit.

    python -m tools.timed_training workflows/training/recipes/eqv2-emt-oc.yaml --minutes 5 \\
        --set training.batch_size=32 training.device=cuda data.train.path=train.extxyz data.train.select=

The learning-rate schedule needs the run's length in advance, so a budget cannot simply stop a run:
this times ``--probe-steps`` optimizer steps of the recipe's model on a small subset of its validation
(or training) data, sets ``training.epochs`` to what fits in ``--minutes`` (validation included, estimated as
``validation batches x 0.4 x step``), and then trains as ``equicalc train`` does (resumable, same
outputs). Used to train the shipped potentials on a lent GPU for a few minutes.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import tempfile
import time

import yaml

from workflows.training.config import TrainConfig, from_dict
from workflows.training.trainer import Trainer, train


def with_overrides(raw: dict, assignments: list[str]) -> dict:
    """``raw`` with each ``dotted.key=value`` set (value parsed as YAML; an empty value is '')."""
    raw = copy.deepcopy(raw)
    for item in assignments:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = raw
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value) if value else ""
    return raw


def seconds_per_step(raw: dict, probe_steps: int) -> float:
    """The median time of one optimizer step of ``raw``'s model on batches of its training data [s]."""
    probe = with_overrides(raw, ["data.validation.max_frames=16", "training.epochs=1"])
    if probe["data"].get("validation"):  # the smaller file: representative batches, read quickly
        probe["data"]["train"] = dict(probe["data"]["validation"])
    probe["data"]["train"]["max_frames"] = 256
    with tempfile.TemporaryDirectory() as scratch:
        probe["training"]["output"] = scratch
        trainer = Trainer(from_dict(probe))
        size = trainer.cfg.training.batch_size
        times = []
        for k in range(probe_steps + 3):
            frames = [trainer.train_frames[(k * size + i) % len(trainer.train_frames)] for i in range(size)]
            started = time.perf_counter()
            trainer.train_step(frames)
            times.append(time.perf_counter() - started)
    return sorted(times[3:])[len(times[3:]) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="training config (YAML)")
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock budget of the training [min]")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. training.device=cuda")
    parser.add_argument("--probe-steps", type=int, default=10, help="steps timed to size the run")
    args = parser.parse_args(argv)
    with open(args.recipe) as handle:
        raw = with_overrides(yaml.safe_load(handle), args.set)
    step = seconds_per_step(raw, args.probe_steps)
    cfg: TrainConfig = from_dict(raw)
    from workflows.training.frames import read_frames

    t, data = cfg.training, cfg.data
    n_train = len(read_frames(data.train.path, data.train.select))
    n_train = min(n_train, data.train.max_frames or n_train)
    if data.validation is None:
        n_val = round(data.validation_fraction * n_train)
    else:
        n_val = data.validation.max_frames or len(read_frames(data.validation.path, data.validation.select))
    epoch = math.ceil(n_train / t.batch_size) * step + math.ceil(n_val / t.batch_size) * 0.4 * step
    epochs = max(1, int(args.minutes * 60 / epoch))
    print(f"{step * 1e3:.0f} ms per step of {t.batch_size} frames; {epoch:.0f} s per epoch; "
          f"{epochs} epochs fit in {args.minutes} min", flush=True)
    train(dataclasses.replace(cfg, training=dataclasses.replace(t, epochs=epochs)))


if __name__ == "__main__":
    main()
