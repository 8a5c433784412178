"""``equicalc screen`` refuses bad input files and arguments up front, in one line naming the problem.

Each case once slipped through: a molecule file with coinciding or unbonded atoms, a slab file with
coinciding atoms, no vacuum or a tiny in-plane cell, an empty molecule file, ``--miller 2,2,2``
taken for another surface than 111, ``--binding a``; and an all-tag-1 slab got sites from its
bottom face too. And the checks once refused good input: a slab wrapped across its cell's top and
bottom, the small cells common in DFT work (sqrt(3) x sqrt(3), c(2x2)), a hydrogen-bonded complex, a
molecule split across its file's periodic cell; they dropped the sites of a user-tagged adatom, and a
repeated surface (``--miller 111 2,2,2``) made two systems of one name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, fcc111_root, surface
from ase.io import write

from workflows.screen.adsorbates import LIBRARY, Adsorbate, library_adsorbate, read_adsorbate
from workflows.screen.placement import make_placements
from workflows.screen.surfaces import prepare_slab

from .conftest import cli_error_line


#: a water dimer, hydrogen-bonded: donor O-H 0.96 Å, H...O 1.95 Å, O...O 2.91 Å
WATER_DIMER = Atoms("OHHOHH", positions=[(0, 0, 0), (0.957, 0, 0), (-0.24, 0.927, 0),
                                         (2.91, 0, 0), (3.15, 0.76, 0.5), (3.15, -0.76, 0.5)])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder of input files: a good slab, and the bad molecules and slabs refused below."""
    folder = tmp_path_factory.mktemp("inputs")
    write(folder / "good.extxyz", fcc111("Pd", (3, 3, 4), vacuum=10.0))
    (folder / "overlap.xyz").write_text("2\n\nC 0 0 0\nO 0 0 0\n")
    (folder / "apart.xyz").write_text("2\n\nC 0 0 0\nO 0 0 10\n")
    (folder / "empty.xyz").write_text("0\n\n")
    (folder / "co.xyz").write_text("2\n\nC 0 0 0\nO 0 0 1.15\n")
    (folder / "co_long.xyz").write_text("2\n\nC 0 0 0\nO 0 0 1.25\n")
    overlapping = fcc111("Pd", (3, 3, 4), vacuum=10.0)
    overlapping.positions[1] = overlapping.positions[0]
    write(folder / "slab_overlap.extxyz", overlapping)
    write(folder / "bulk.extxyz", bulk("Pd", "fcc", a=3.89, cubic=True))
    write(folder / "periodic_z.extxyz", fcc111("Pd", (3, 3, 4), periodic=True))
    write(folder / "tiny.extxyz", fcc111("Pd", (1, 1, 4), vacuum=10.0))
    split = Atoms("CO", positions=[(5, 5, 0.3), (5, 5, 9.15)], cell=[10, 10, 10], pbc=True)  # C-O 1.15 Å via z
    write(folder / "co_split.extxyz", split)
    write(folder / "water_dimer.xyz", WATER_DIMER)
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


def test_hydrogen_bonded_complex_is_one_adsorbate(files):
    """A water dimer (O-H...O 1.95 Å) is one complex under the desorption bonds (x 1.5 + skin)."""
    assert len(Adsorbate("H4O2", WATER_DIMER, (0,)).atoms) == 6
    assert read_adsorbate(files / "water_dimer.xyz", [0]).name == "H4O2"


def test_molecule_split_across_its_periodic_cell_is_made_whole(files):
    """A CO written across its file's periodic cell (C at z 0.3, O at 9.15 of 10 Å) is read whole; the
    same Atoms handed to the API is refused with a hint at the cell."""
    adsorbate = read_adsorbate(files / "co_split.extxyz", [0])
    assert adsorbate.atoms.get_distance(0, 1) == pytest.approx(1.15)
    assert not adsorbate.atoms.pbc.any()
    split = Atoms("CO", positions=[(5, 5, 0.3), (5, 5, 9.15)], cell=[10, 10, 10], pbc=True)
    with pytest.raises(ValueError, match="2 unbonded parts.*is the molecule split across it"):
        Adsorbate("CO", split, (0,))


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
    """A 2x2 Ni(111) cell (4.98 Å) with 6 Å of vacuum in all is still screened, and so are the small
    cells of DFT work: sqrt(3) x sqrt(3) R30 Cu(111) (4.42 Å) and Ni(111) (4.31 Å), c(2x2) Cu(100) (3.61 Å)."""
    assert len(prepare_slab(fcc111("Ni", (2, 2, 4), vacuum=3.0))) == 16
    assert len(prepare_slab(fcc111_root("Cu", 3, (1, 1, 4), a=3.61, vacuum=5.0))) == 12
    assert len(prepare_slab(fcc111_root("Ni", 3, (1, 1, 4), a=3.52, vacuum=5.0))) == 12
    c2x2 = surface(bulk("Cu", "fcc", a=3.61, cubic=True), (0, 0, 1), 2, vacuum=5.0)  # 4 layers, 2 atoms each
    np.testing.assert_allclose(c2x2.cell.lengths()[:2], 3.61)
    assert len(prepare_slab(c2x2)) == 8
    with pytest.raises(ValueError, match="repeats every 2.55 Å in-plane"):  # the 1x1 Cu(100) cell still is not
        prepare_slab(surface(bulk("Cu", "fcc", a=3.61), (0, 0, 1), 4, vacuum=5.0))


def test_slab_wrapped_across_its_cell_is_joined_then_tagged():
    """A slab shifted by half its cell along z and wrapped (its vacuum in the middle of the cell, as
    some DFT codes write it) is the same slab: same tags, positions, sites; a bulk cell is still refused."""
    slab = fcc111("Cu", (3, 3, 4), vacuum=7.0)
    wrapped = slab.copy()
    wrapped.positions[:, 2] += 0.5 * slab.cell[2, 2]
    wrapped.wrap(pbc=True)
    assert np.ptp(wrapped.positions[:, 2]) > 18.0  # split between the cell's top and bottom
    expected, joined = prepare_slab(slab), prepare_slab(wrapped)
    np.testing.assert_array_equal(joined.get_tags(), expected.get_tags())
    np.testing.assert_allclose(joined.get_scaled_positions(), expected.get_scaled_positions(), atol=1e-9)
    assert joined.constraints[0].index.tolist() == expected.constraints[0].index.tolist()
    placements = [make_placements(s, library_adsorbate("O"), num_random=0) for s in (slab, wrapped)]
    assert [p.site for p in placements[1]] == [p.site for p in placements[0]]
    np.testing.assert_allclose([p.site_position[2] for p in placements[1]],
                               [p.site_position[2] for p in placements[0]])
    shifted = bulk("Pd", "fcc", a=3.89, cubic=True)
    shifted.positions[:, 2] += 1.0
    shifted.wrap()
    with pytest.raises(ValueError, match="vacuum gap along z of 1.95 Å"):
        prepare_slab(shifted)


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


def test_user_tags_keep_the_sites_around_an_adatom():
    """The upper-half rule is for all-tag-1 slabs only: a two-layer slab with an adatom, its top layer and
    the adatom tagged 1 by the user, gets sites on the top layer as well as on the adatom."""
    slab = fcc111("Pd", (3, 3, 2), vacuum=10.0)
    add_adsorbate(slab, "Pd", 2.3, "fcc")
    z = slab.positions[:, 2]
    slab.set_tags(np.where(z > z.min() + 0.1, 1, 0))
    placements = make_placements(slab, library_adsorbate("O"), num_random=0)
    heights = {round(p.site_position[2], 2) for p in placements}
    assert round(z[-1], 2) in heights  # on top of the adatom
    assert round(z[0] + 2.25, 2) in heights  # on the top layer
    assert {p.site for p in placements} == {"ontop", "bridge", "hollow"}


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


def test_repeated_systems_are_dropped(files):
    """``--bulk Pd Pd --miller 111 2,2,2 --adsorbate CO *CO`` is one system, not 8 of one name; two systems
    of one name but another geometry are refused before any model loads."""
    from workflows.cli import build_parser
    from workflows.cli.screen import build_systems

    args = build_parser().parse_args(["screen", "--bulk", "Pd", "Pd", "--miller", "111", "2,2,2",
                                      "--adsorbate", "CO", "*CO"])
    assert [system.name for system in build_systems(args)] == ["Pd/111/CO"]
    args = build_parser().parse_args(["screen", "--slab", str(files / "good.extxyz"), str(files / "good.extxyz"),
                                      "--adsorbate", "O"])
    assert len(build_systems(args)) == 1
    args = build_parser().parse_args(["screen", "--slab", str(files / "good.extxyz"), "--adsorbate", "CO",
                                      "--adsorbate-file", str(files / "co.xyz"), "--binding", "0"])
    assert len(build_systems(args)) == 1  # co.xyz is the built-in CO, atom for atom
    args = build_parser().parse_args(["screen", "--slab", str(files / "good.extxyz"), "--adsorbate", "CO",
                                      "--adsorbate-file", str(files / "co_long.xyz"), "--binding", "0"])
    with pytest.raises(ValueError, match="good.extxyz/CO' but differ in geometry"):
        build_systems(args)
