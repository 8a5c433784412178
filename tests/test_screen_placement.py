"""Screening inputs and placements: slabs from bulks, the adsorbate library, AdsorbML-style sites.

Physics checked: Cu(111) is the fcc(111) slab ASE builds (pymatgen's structure matcher), every
placed atom clears the slab by covalent radii and the binding atoms touch it, sites are distinct
and symmetry-unique (4 on fcc(111)), the library's gas geometries match ASE's g2 molecules.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import fcc111, molecule
from ase.constraints import FixAtoms
from ase.data import covalent_radii
from ase.io import write
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.io.ase import AseAtomsAdaptor

from workflows.data.slabs import make_slab as data_slab
from workflows.screen.adsorbates import LIBRARY, Adsorbate, library_adsorbate, read_adsorbate
from workflows.screen.placement import DEDUP_DISTANCE, make_placements
from workflows.screen.surfaces import cut_slab, prepare_slab, read_bulk

#: library names whose gas molecule ASE's g2 collection has.
G2_NAMES = {"OH": "OH", "CO": "CO", "NO": "NO", "N2": "N2", "NH": "NH", "NH2": "NH2", "CH": "CH",
            "CH2": "CH2_s1A1d", "CH3": "CH3", "OCH3": "CH3O", "H2O": "H2O", "CHO": "HCO",
            "CHCH": "C2H2", "CH2CH2": "C2H4", "OCHO": "HCOOH"}


@pytest.fixture(scope="module")
def pt111() -> Atoms:
    return data_slab("Pt", "111")  # 3x3x4


@pytest.fixture(scope="module")
def pt211() -> Atoms:
    return data_slab("Pt", "211")


def _in_plane_distance(cell: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Shortest periodic in-plane distance (Å) between the xy points ``a`` and ``b``."""
    shifts = np.array([(i, j) for i in range(-2, 3) for j in range(-2, 3)]) @ cell[:2, :2]
    return float(np.linalg.norm(b - a + shifts, axis=1).min())


def _contact(placement) -> np.ndarray:
    """(n_adsorbate, n_slab x 9) ratio of each adsorbate-slab distance (with in-plane images) to the
    sum of covalent radii."""
    atoms = placement.atoms
    adsorbate = atoms.get_tags() == 2
    shifts = np.array([(i, j, 0) for i in (-1, 0, 1) for j in (-1, 0, 1)]) @ atoms.cell
    slab = (atoms.positions[~adsorbate][:, None, :] + shifts[None]).reshape(-1, 3)
    radii = np.repeat(covalent_radii[atoms.numbers[~adsorbate]], 9)
    distance = np.linalg.norm(atoms.positions[adsorbate][:, None, :] - slab[None], axis=2)
    return distance / (covalent_radii[atoms.numbers[adsorbate]][:, None] + radii[None])


def _periodic(atoms: Atoms):
    """``atoms`` as a 3-D periodic pymatgen Structure (its Niggli reduction fails on a slab's pbc)."""
    atoms = atoms.copy()
    atoms.pbc = True
    return AseAtomsAdaptor.get_structure(atoms)


def _sites_xy(placements) -> np.ndarray:
    return np.array([p.site_position[:2] for p in placements])


def test_same_seed_same_placements_other_seed_other_sites(pt111):
    adsorbate = library_adsorbate("*CO")
    first = make_placements(pt111, adsorbate, num_random=10, seed=3)
    again = make_placements(pt111, adsorbate, num_random=10, seed=3)
    other = make_placements(pt111, adsorbate, num_random=10, seed=4)
    assert [p.config_id for p in first] == [p.config_id for p in again]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.atoms.positions, b.atoms.positions)
    random_first = _sites_xy([p for p in first if p.site == "random"])
    random_other = _sites_xy([p for p in other if p.site == "random"])
    assert np.abs(random_first - random_other).min(axis=1).max() > 0.1
    first[0].atoms.positions[0] += 1.0  # independent copies
    assert not np.allclose(first[1].atoms.positions[0], first[0].atoms.positions[0])
    assert not np.allclose(again[0].atoms.positions[0], first[0].atoms.positions[0])


@pytest.mark.parametrize("facet", ["111", "211"])
def test_sites_distinct_and_atoms_clear_the_slab(facet, pt111, pt211):
    slab = pt111 if facet == "111" else pt211
    placements = make_placements(slab, library_adsorbate("OCH3"), num_random=40, seed=0)
    assert len({p.config_id for p in placements}) == len(placements)
    assert sum(p.site == "random" for p in placements) == 40
    xy = _sites_xy(placements)
    closest = min(_in_plane_distance(slab.cell, xy[i], xy[j]) for i in range(len(xy)) for j in range(i))
    assert closest >= DEDUP_DISTANCE
    for placement in placements:
        ratio = _contact(placement)
        assert ratio.min() >= 0.9 - 1e-6, placement.config_id  # no overlap
        assert ratio[0].min() <= 1.1, placement.config_id  # the binding O touches the slab
        atoms = placement.atoms
        np.testing.assert_array_equal(atoms.get_tags()[:len(slab)], slab.get_tags())
        assert (atoms.get_tags()[len(slab):] == 2).all() and atoms.pbc.tolist() == [True, True, False]
        (fix,) = atoms.constraints
        assert isinstance(fix, FixAtoms)
        np.testing.assert_array_equal(np.sort(fix.index), np.flatnonzero(atoms.get_tags() == 0))
        # the binding atom sits over its site
        assert _in_plane_distance(atoms.cell, atoms.positions[len(slab), :2],
                                  np.array(placement.site_position[:2])) < 1e-6


def test_heuristic_sites_fcc111_and_stepped_211(pt111, pt211):
    placements = make_placements(pt111, library_adsorbate("O"), num_random=0)
    assert [p.site for p in placements] == ["ontop", "bridge", "hollow", "hollow"]  # fcc and hcp hollows
    assert [p.config_id for p in placements] == ["heur-ontop-0", "heur-bridge-1", "heur-hollow-2",
                                                 "heur-hollow-3"]
    z = pt111.positions[:, 2]
    ontop, bridge, fcc, hcp = (np.array(p.site_position) for p in placements)
    a_nn = 3.92 / np.sqrt(2)
    assert ontop[2] == pytest.approx(z.max())
    top_xy = pt111.positions[z > z.max() - 0.1, :2]
    assert min(_in_plane_distance(pt111.cell, ontop[:2], p) for p in top_xy) < 1e-6
    assert min(_in_plane_distance(pt111.cell, bridge[:2], p) for p in top_xy) == pytest.approx(a_nn / 2, abs=1e-3)
    # one hollow sits over a second-layer atom (hcp), the other over a third-layer atom (fcc)
    layers = np.unique(z.round(2))[::-1]
    over = [[min(_in_plane_distance(pt111.cell, h[:2], p) for p in pt111.positions[np.isclose(z, layer, atol=0.05), :2])
             for layer in layers[1:3]] for h in (fcc, hcp)]
    assert sorted(np.argmin(o) for o in over) == [0, 1] and max(min(o) for o in over) < 1e-3
    # the 211: sites on the step edge, the terrace and the step foot, not only the top row
    stepped = make_placements(pt211, library_adsorbate("O"), num_random=0)
    kinds = [p.site for p in stepped]
    assert kinds.count("ontop") == 3 and kinds.count("bridge") >= 3 and kinds.count("hollow") >= 3
    heights = sorted(p.site_position[2] for p in stepped if p.site == "ontop")
    assert heights[-1] - heights[0] == pytest.approx(2 * 3.92 / np.sqrt(24), abs=0.01)  # 3 rows, a/sqrt(24) apart


@pytest.mark.parametrize("miller", [(1, 0, 0), (1, 1, 0)])
def test_adsorbate_stays_above_open_facets(miller):
    """H lowered over Al(100)/(110) stops at first contact, not in an interstitial hole below."""
    slab = cut_slab(read_bulk("Al"), miller)
    layers = np.unique(slab.positions[:, 2].round(2))[::-1]
    for placement in make_placements(slab, library_adsorbate("H"), num_random=30, seed=0):
        assert placement.atoms.positions[-1, 2] > layers[1], placement.config_id  # above the second layer


def test_fourfold_hollow_on_fcc100():
    slab = data_slab("Pt", "100")
    kinds = [p.site for p in make_placements(slab, library_adsorbate("H"), num_random=0)]
    assert kinds == ["ontop", "bridge", "hollow"]


@pytest.mark.parametrize("name", ["OCHO", "CHCH", "CH2CH2"])
def test_bidentate_binds_through_both_atoms(name, pt111, pt211):
    adsorbate = library_adsorbate(name)
    assert adsorbate.binding_indices == (0, 1)
    for slab in (pt111, pt211):
        for placement in make_placements(slab, adsorbate, num_random=3, seed=1):
            ratio = _contact(placement)
            assert ratio.min() >= 0.9 - 1e-6, placement.config_id
            assert ratio[0].min() <= 1.1 and ratio[1].min() <= 1.1, placement.config_id


def test_library_gas_geometry_matches_ase():
    assert set(LIBRARY) >= {"H", "O", "OH", "CO", "N", "NH", "NH2", "CH3", "OCH3", "OCHO", "CHCH"}
    for name, g2_name in G2_NAMES.items():
        ours, reference = library_adsorbate(name).atoms, molecule(g2_name)
        assert sorted(ours.get_chemical_symbols()) == sorted(reference.get_chemical_symbols()) or name == "OCHO"
        for i in range(len(ours)):
            for j in range(i):
                bond = covalent_radii[ours.numbers[i]] + covalent_radii[ours.numbers[j]]
                length = ours.get_distance(i, j)
                if length > 1.25 * bond:
                    continue
                pair = {ours[i].symbol, ours[j].symbol}
                lengths = [reference.get_distance(k, m) for k in range(len(reference)) for m in range(k)
                           if {reference[k].symbol, reference[m].symbol} == pair]
                closest = min(lengths, key=lambda r: abs(r - length))
                assert abs(length - closest) <= 0.1 * closest, (name, pair, length, closest)


def test_read_adsorbate_turns_molecule_to_stand(tmp_path):
    water = molecule("H2O")
    water.rotate(70, "x")
    path = tmp_path / "water.xyz"
    write(path, water)
    adsorbate = read_adsorbate(path, [0], name="*H2O")
    assert adsorbate.name == "H2O"
    np.testing.assert_allclose(adsorbate.atoms.positions[0], 0.0, atol=1e-9)
    assert (adsorbate.atoms.positions[1:, 2] > 0.5).all()  # both H above the binding O
    glyoxal = molecule("OCHCHO")
    write(tmp_path / "glyoxal.xyz", glyoxal)
    oxygens = [i for i, s in enumerate(glyoxal.get_chemical_symbols()) if s == "O"]
    flat = read_adsorbate(tmp_path / "glyoxal.xyz", oxygens).atoms
    np.testing.assert_allclose(flat.positions[oxygens[1], 1:], 0.0, atol=1e-9)  # second O on +x
    assert flat.positions[oxygens[1], 0] > 0
    np.testing.assert_allclose(flat.get_all_distances(), glyoxal.get_all_distances(), atol=1e-9)


def test_make_slab_cu111_is_ase_fcc111():
    a = 3.61
    slab = cut_slab(read_bulk("Cu"), (1, 1, 1))
    lengths = np.linalg.norm(slab.cell[:2], axis=1)
    assert (lengths >= 8.0).all() and slab.pbc.tolist() == [True, True, False]
    assert np.allclose(slab.cell[2, :2], 0.0) and np.allclose(slab.cell[:2, 2], 0.0)
    distances = slab.get_all_distances(mic=True)
    np.testing.assert_allclose(distances[distances > 0.1].min(), a / np.sqrt(2), rtol=1e-6)
    z = slab.positions[:, 2]
    assert z.min() == pytest.approx(6.0) and slab.cell[2, 2] - z.max() == pytest.approx(6.0)
    layers = len(np.unique(z.round(3)))
    n = round(lengths[0] / (a / np.sqrt(2)))
    reference = fcc111("Cu", (n, n, layers), a=a, vacuum=6.0)
    matcher = StructureMatcher(ltol=1e-3, stol=1e-3, angle_tol=0.1, primitive_cell=False, scale=False)
    assert matcher.fit(_periodic(slab), _periodic(reference))  # same up to translation, permutation, cell
    assert not matcher.fit(_periodic(slab), _periodic(fcc111("Cu", (n, n, layers), a=1.01 * a, vacuum=6.0)))
    tags = slab.get_tags()
    assert set(tags) == {0, 1} and (z[tags == 1].min() > z[tags == 0].max())
    np.testing.assert_array_equal(np.sort(slab.constraints[0].index), np.flatnonzero(tags == 0))


def test_read_bulk_from_file_and_prepare_slab(tmp_path):
    write(tmp_path / "Pd.cif", read_bulk("Pd"))
    from_file = cut_slab(read_bulk(tmp_path / "Pd.cif"), (1, 0, 0))
    built_in = cut_slab(read_bulk("Pd"), (1, 0, 0))
    assert len(from_file) == len(built_in) and np.allclose(from_file.cell, built_in.cell)
    untagged = fcc111("Pt", (3, 3, 4), vacuum=6.0)
    untagged.set_tags(0)
    prepared = prepare_slab(untagged)
    assert prepared.get_tags().sum() == 18 and len(prepared.constraints[0].index) == 18
    assert prepared.pbc.tolist() == [True, True, False]
    ase_layers = prepare_slab(fcc111("Pt", (3, 3, 4), vacuum=6.0))  # ASE's tags: layers 1..4 from the top
    assert np.array_equal(ase_layers.get_tags(), prepared.get_tags())


def test_bad_inputs_say_what_is_wrong(tmp_path, pt111):
    with pytest.raises(ValueError, match="no binding atom"):
        Adsorbate("CO", library_adsorbate("CO").atoms, ())
    with pytest.raises(ValueError, match="out of range"):
        Adsorbate("CO", library_adsorbate("CO").atoms, (2,))
    with pytest.raises(ValueError, match="at most 2"):
        Adsorbate("CH3", library_adsorbate("CH3").atoms, (0, 1, 2))
    with pytest.raises(ValueError, match="no atoms"):
        Adsorbate("nothing", Atoms(), (0,))
    with pytest.raises(ValueError, match=r"unknown adsorbate '\*XY'.*CO"):
        library_adsorbate("*XY")
    with pytest.raises(FileNotFoundError, match="missing.xyz"):
        read_adsorbate(tmp_path / "missing.xyz", [0])
    monolayer = fcc111("Pt", (3, 3, 1), vacuum=6.0)
    monolayer.set_tags(0)
    with pytest.raises(ValueError, match="no surface atoms"):
        make_placements(monolayer, library_adsorbate("CO"))
    covered = make_placements(pt111, library_adsorbate("CO"), num_random=0)[0].atoms
    with pytest.raises(ValueError, match="tagged 2"):
        prepare_slab(covered)
    tilted = pt111.copy()
    tilted.set_cell([tilted.cell[0], tilted.cell[1], [1.0, 0.0, tilted.cell[2, 2]]])
    with pytest.raises(ValueError, match="c along z"):
        prepare_slab(tilted)
    cu = read_bulk("Cu")
    with pytest.raises(ValueError, match=r"\(0, 0, 0\)"):
        cut_slab(cu, (0, 0, 0))
    with pytest.raises(ValueError, match="three integers"):
        cut_slab(cu, (1, 1))
    with pytest.raises(ValueError, match="has 1 termination"):
        cut_slab(cu, (1, 1, 1), termination=3)
    with pytest.raises(FileNotFoundError, match="neither a built-in bulk"):
        read_bulk("Unobtainium")
    with pytest.raises(ValueError, match="periodic in 3-D"):
        read_bulk(molecule("CO"))
    with pytest.raises(ValueError, match="fit on this surface"):
        make_placements(pt111, library_adsorbate("H"), num_random=2000)
