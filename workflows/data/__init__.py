"""OC20-style adsorption reference data, labelled by any ASE calculator (``equicalc data``).

``generate_dataset(path, seed=0, size="default", labeller="emt")`` writes one ASE SQLite database
of frames (energy, forces, stress for bulks; OC20 tags; FixAtoms) with train / val / test_id /
test_ood splits, and a data card beside it. Modules: :mod:`.bulks`, :mod:`.slabs`,
:mod:`.adsorbates` (structures), :mod:`.labellers`, :mod:`.frames` (labelled, screened frames),
:mod:`.recipes` (the frames of one system), :mod:`.plan` (systems and splits), :mod:`.dataset`
(writing, resuming), :mod:`.card` (the data card).
"""

from .dataset import generate_dataset

__all__ = ["generate_dataset"]
