"""EquiformerV2 (Liao, Wood, Das and Smidt, ICLR 2024; arXiv 2306.12059), built from small modules.

- :mod:`.so3`: coefficient layouts, Wigner-D matrices, edge frames and edge rotations;
- :mod:`.layers`: degree-wise linear maps, radial networks, the Gaussian basis, the S2 grid;
- :mod:`.so2_conv`: the eSCN SO(2) convolution;
- :mod:`.norms`: the equivariant normalisations;
- :mod:`.blocks`: edge-degree embedding, graph attention, feed-forward, transformer block;
- :mod:`.model`: the model;
- :mod:`.fairchem_import`: reading fairchem 1.x checkpoints (a registered checkpoint format).
"""

from . import fairchem_import as _fairchem_import  # noqa: F401  (registers the fairchem checkpoint format)
from .model import EquiformerV2, EquiformerV2Config

__all__ = ["EquiformerV2", "EquiformerV2Config"]
