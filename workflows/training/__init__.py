"""Training potentials on labelled frames: ``equicalc train CONFIG.yaml``.

- :mod:`.config`: the YAML config, every key documented (``equicalc train --example``);
- :mod:`.frames`: reading labelled frames from any ASE-readable file and checking them;
- :mod:`.statistics`: least-squares reference energies and average neighbour counts;
- :mod:`.loss`: the loss and the validation metrics;
- :mod:`.schedule`: warm-up then cosine, plateau or constant learning rate;
- :mod:`.distributed`: data parallelism under ``torchrun``;
- :mod:`.trainer`: the loop, checkpoints and exact resume.
"""

from .config import TrainConfig, example_yaml, from_dict, load_config
from .frames import DataError, Frame, read_frames
from .trainer import Trainer, TrainResult, restart, score, train

__all__ = ["DataError", "Frame", "TrainConfig", "TrainResult", "Trainer", "example_yaml", "from_dict", "load_config",
           "read_frames", "restart", "score", "train"]
