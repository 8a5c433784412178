"""``equicalc screen`` refuses bad input files and arguments up front, in one line naming the problem.

Each case once slipped through: a molecule file with coinciding or unbonded atoms, a slab file with
coinciding atoms, no vacuum or a tiny in-plane cell, an empty molecule file, ``--miller 2,2,2``
taken for another surface than 111, ``--binding a``; and an all-tag-1 slab got sites from its
bottom face too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from ase.io import write

from workflows.screen.adsorbates import LIBRARY, Adsorbate, library_adsorbate
from workflows.screen.placement import make_placements
from workflows.screen.surfaces import prepare_slab

from .conftest import cli_error_line


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder of input files: a good slab, and the bad molecules and slabs refused below."""
    folder = tmp_path_factory.mktemp("inputs")
    write(folder / "good.extxyz", fcc111("Pd", (3, 3, 4), vacuum=10.0))
    (folder / "overlap.xyz").write_text("2\n\nC 0 0 0\nO 0 0 0\n")
    (folder / "apart.xyz").write_text("2\n\nC 0 0 0\nO 0 0 10\n")
    (folder / "empty.xyz").write_text("0\n\n")
    (folder / "co.xyz").write_text("2\n\nC 0 0 0\nO 0 0 1.15\n")
    overlapping = fcc111("Pd", (3, 3, 4), vacuum=10.0)
    overlapping.positions[1] = overlapping.positions[0]
    write(folder / "slab_overlap.extxyz", overlapping)
    write(folder / "bulk.extxyz", bulk("Pd", "fcc", a=3.89, cubic=True))
    write(folder / "periodic_z.extxyz", fcc111("Pd", (3, 3, 4), periodic=True))
    write(folder / "tiny.extxyz", fcc111("Pd", (1, 1, 4), vacuum=10.0))
    return folder


def screen_error(files: Path, capsys, *arguments: str) -> str:
    """The one error line of ``equicalc screen arguments`` run in the folder ``files`` (exit code 2)."""
    return cli_error_line(["screen", *arguments, "--out", str(files / "out")], capsys)


def adsorbate_error(files: Path, capsys, name: str) -> str:
    """The error line for the molecule file ``name`` of ``files`` placed on the good slab."""
    return screen_error(files, capsys, "--slab", str(files / "good.extxyz"),
                        "--adsorbate-file", str(files / name), "--binding", "0")


def test_adsorbate_file_with_coinciding_atoms_is_refused(files, capsys):
    line = adsorbate_error(files, capsys, "overlap.xyz")
    assert "overlap.xyz" in line and "atoms 0 (C) and 1 (O) coincide" in line


def test_adsorbate_file_in_unbonded_parts_is_refused(files, capsys):
    line = adsorbate_error(files, capsys, "apart.xyz")
    assert "apart.xyz" in line and "2 unbonded parts" in line and "atoms 0 (C); atoms 1 (O)" in line
    with pytest.raises(ValueError, match="not one molecule"):  # the Python API too
        Adsorbate("CO", Atoms("CO", positions=[(0, 0, 0), (0, 0, 10)]), (0,))


def test_empty_adsorbate_file_is_named(files, capsys):
    line = adsorbate_error(files, capsys, "empty.xyz")
    assert "'" + str(files / "empty.xyz") + "' holds no atoms" in line


def test_good_molecules_are_accepted():
    """Every built-in adsorbate (the bidentate ones too) is one molecule with no coinciding atoms."""
    for name in LIBRARY:
        adsorbate = library_adsorbate(name)
        assert Adsorbate(name, adsorbate.atoms, adsorbate.binding_indices).atoms is adsorbate.atoms


def test_slab_file_with_coinciding_atoms_is_refused(files, capsys):
    line = screen_error(files, capsys, "--slab", str(files / "slab_overlap.extxyz"), "--adsorbate", "CO")
    assert "slab_overlap.extxyz" in line and "atoms 0 (Pd) and 1 (Pd) coincide" in line


@pytest.mark.parametrize(("name", "measured"), [
    ("bulk.extxyz", "vacuum gap along z of 1.95 Å"),  # a bulk cell: half its 3.89 Å cube is "vacuum"
    ("periodic_z.extxyz", "vacuum gap along z of 2.25 Å"),  # one (111) interlayer spacing
    ("tiny.extxyz", "repeats every 2.75 Å in-plane"),  # a 1x1 Pd(111) cell
])
def test_slab_file_without_vacuum_or_room_in_plane_is_refused(files, capsys, name, measured):
    line = screen_error(files, capsys, "--slab", str(files / name), "--adsorbate", "CO")
    assert name in line and measured in line


def test_small_but_usual_slab_cells_are_accepted():
    """A 2x2 Ni(111) cell (4.98 Å) with 6 Å of vacuum in all is still screened."""
    assert len(prepare_slab(fcc111("Ni", (2, 2, 4), vacuum=3.0))) == 16


def test_all_tag_1_slab_gets_the_sites_of_the_untagged_one():
    """Sites come from the top face only: an all-tag-1 slab's bottom face gives none."""
    untagged = fcc111("Pd", (3, 3, 4), vacuum=10.0)
    untagged.set_tags(0)
    all_tagged = untagged.copy()
    all_tagged.set_tags(1)
    expected, placements = (make_placements(slab, library_adsorbate("O"), num_random=0)
                            for slab in (untagged, all_tagged))
    assert [p.site for p in placements] == [p.site for p in expected] == ["ontop", "bridge", "hollow", "hollow"]
    np.testing.assert_allclose([p.site_position for p in placements], [p.site_position for p in expected])


def test_miller_multiples_are_reduced_and_named_so(files):
    from workflows.cli import build_parser
    from workflows.cli.screen import build_systems

    args = build_parser().parse_args(["screen", "--bulk", "Pd", "--miller", "2,2,2", "200",
                                      "--adsorbate-file", str(files / "co.xyz"), "--binding", "0"])
    assert args.miller == [(1, 1, 1), (1, 0, 0)]
    assert [system.name for system in build_systems(args)] == ["Pd/111/CO", "Pd/100/CO"]


def test_binding_that_is_not_indices_is_refused_clearly(files, capsys):
    for text in ("a", "-1", "0,"):
        line = screen_error(files, capsys, "--slab", str(files / "good.extxyz"),
                            "--adsorbate-file", str(files / "co.xyz"), "--binding", text)
        assert f"--binding: expected comma-separated atom indices such as 0 or 0,1, got {text!r}" in line
