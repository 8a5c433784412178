"""The band path through the Brillouin zone: ASE's special points for the lattice of the primitive cell.

The labels and the default path are those of Setyawan and Curtarolo, Comput. Mater. Sci. 49, 299
(2010), as ASE's ``Cell.bandpath`` gives them; ASE transforms the special points to the cell as
given, so the path is right for any orientation and choice of basis vectors of the primitive cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.cell import Cell
from ase.dft.kpoints import parse_path_string
from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections


@dataclass
class BandPath:
    """q-points along a band path, in the reduced coordinates of the primitive reciprocal lattice.

    Attributes:
        segments: one ``(n_q, 3)`` array per straight segment between two special points.
        labels: the special points at the ends of the segments, in phonopy's convention: the start
            of each continuous run of segments, then the end of each of its segments ("Γ" for G).
        connections: ``(n_segments,)``: whether each segment continues into the next (False at a jump).
    """

    segments: list[np.ndarray]
    labels: list[str]
    connections: list[bool]


def band_path(primitive_cell: np.ndarray, path: str = "auto", points: int = 51) -> BandPath:
    """The band path ``path`` for the lattice of ``primitive_cell``.

    Args:
        primitive_cell: ``(3, 3)`` lattice vectors of the primitive cell as rows [Å].
        path: ``"auto"`` (the standard path for the lattice) or special points by ASE's labels,
            runs separated by commas, e.g. ``"GXWKGLUWLK,UX"`` for fcc.
        points: q-points on the longest segment, ends included; the others get as many as keep
            the same spacing.

    Raises:
        ValueError: a label that is not a special point of this lattice, a run of fewer than two
            points, or ``points`` < 2.
    """
    if points < 2:
        raise ValueError(f"band path points must be >= 2, got {points}")
    cell = Cell(primitive_cell)
    special = cell.bandpath(npoints=0).special_points
    runs = parse_path_string(cell.bandpath(npoints=0).path if path == "auto" else path)
    unknown = sorted({label for run in runs for label in run} - set(special))
    if unknown:
        raise ValueError(f"band path {path!r}: no special point {', '.join(unknown)} in this "
                         f"{cell.get_bravais_lattice().name} lattice (it has {', '.join(sorted(special))})")
    if any(len(run) < 2 for run in runs):
        raise ValueError(f"band path {path!r}: every run between commas needs at least two special points")
    reciprocal = np.linalg.inv(primitive_cell)  # columns: reciprocal basis vectors without 2π [1/Å]
    segments, connections = get_band_qpoints_and_path_connections(
        [[special[label] for label in run] for run in runs], npoints=points, rec_lattice=reciprocal,
    )
    labels = ["Γ" if label == "G" else label for run in runs for label in run]
    return BandPath(segments=segments, labels=labels, connections=connections)
