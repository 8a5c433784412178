"""Anomaly detection of relaxed adsorption configurations (AdsorbML's definitions) and the screen's pictures.

The system: an EMT-relaxed Pt(111) 3x3x4 slab (OC20 tags: bottom two layers 0 and fixed, top two 1) with *O
(tag 2) 2 Å above an fcc hollow. Bonds: d < mult * (r_i + r_j) + 2 * skin (ASE adds the skin to each radius).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import add_adsorbate, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import covalent_radii
from ase.geometry import get_distances
from ase.optimize import BFGS

from workflows.data.bulks import lattice_constant
from workflows.data.slabs import tag_and_fix
from workflows.screen.anomaly import ANOMALIES, AnomalySettings, detect_anomalies
from workflows.screen.plots import plot_configuration, plot_energy_spread

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def clean_slab() -> Atoms:
    slab = tag_and_fix(fcc111("Pt", (3, 3, 4), a=lattice_constant("Pt"), vacuum=6.0))
    slab.calc = EMT()
    BFGS(slab, logfile=None).run(fmax=0.05, steps=50)
    slab.calc = None
    return slab


def adslab(clean_slab: Atoms, adsorbate: str = "O", height: float = 2.0) -> Atoms:
    """``clean_slab`` with ``adsorbate`` (O or OH, O down, O-H 0.97 Å along z) above an fcc hollow."""
    molecule = Atoms(adsorbate, positions=[(0, 0, 0), (0, 0, 0.97)][:len(adsorbate)], tags=[2] * len(adsorbate))
    atoms = clean_slab.copy()
    add_adsorbate(atoms, molecule, height, "fcc")
    return atoms


def top_layer(atoms: Atoms) -> np.ndarray:
    z = atoms.positions[:, 2]
    return np.flatnonzero((atoms.get_tags() == 1) & (z > z[atoms.get_tags() == 1].max() - 0.5))


def bond_radius(symbol_a: str, symbol_b: str, mult: float, skin: float) -> float:
    """Å: the largest bonded distance, from ASE's covalent radii (what ``natural_cutoffs`` uses)."""
    radius = {s: covalent_radii[Atoms(s).numbers[0]] for s in (symbol_a, symbol_b)}
    return mult * (radius[symbol_a] + radius[symbol_b]) + 2 * skin


def test_unchanged_configuration_is_valid(clean_slab):
    initial = adslab(clean_slab)
    assert detect_anomalies(initial, initial.copy(), clean_slab) == []
    assert detect_anomalies(initial, initial.copy()) == []  # fallback: the slab part of initial


def test_desorbed(clean_slab):
    initial = adslab(clean_slab)
    final = initial.copy()
    final.positions[-1, 2] += 6.0
    assert detect_anomalies(initial, final, clean_slab) == ["desorbed"]


def test_dissociated(clean_slab):
    initial = adslab(clean_slab, "OH")
    final = initial.copy()
    final.positions[-1] = final.positions[-2] + [3.0, 0.0, 0.0]  # H 3 Å from O, beside it on the surface
    assert np.isclose(final.get_distance(-1, -2), 3.0)
    assert detect_anomalies(initial, final, clean_slab) == ["dissociated"]


def test_surface_changed(clean_slab):
    initial = adslab(clean_slab)
    o_site = initial.positions[-1]
    top = top_layer(initial)
    # a top-layer atom away from the O moves 2 Å towards a top-layer neighbour
    far = top[np.argmax(get_distances(o_site, initial.positions[top], initial.cell, initial.pbc)[1][0])]
    d = initial.get_distances(far, top, mic=True, vector=True)
    neighbour = np.argmin(np.where(np.linalg.norm(d, axis=1) > 0.1, np.linalg.norm(d, axis=1), np.inf))
    final = initial.copy()
    final.positions[far] += 2.0 * d[neighbour] / np.linalg.norm(d[neighbour])
    assert detect_anomalies(initial, final, clean_slab) == ["surface_changed"]
    # the reference is the clean slab: an adslab whose slab matches a reconstructed clean slab is valid
    assert detect_anomalies(final, final.copy(), final[:-1]) == []


def test_intercalated_only_when_asked(clean_slab):
    initial = adslab(clean_slab)
    tags = initial.get_tags()
    subsurface = np.flatnonzero(tags == 0)
    upper = subsurface[np.argmax(initial.positions[subsurface, 2])]  # an atom of the upper tag-0 layer
    final = initial.copy()
    final.positions[-1] = initial.positions[upper] + [0.0, 0.0, 1.2]  # O between the tag-0 and tag-1 layers
    assert detect_anomalies(initial, final, clean_slab) == ["intercalated"]
    assert detect_anomalies(initial, final, clean_slab, AnomalySettings(intercalation=False)) == []


def test_non_finite_is_reported_alone(clean_slab):
    initial = adslab(clean_slab)
    final = initial.copy()
    final.positions[-1, 2] = np.nan  # would also be "desorbed" if evaluated
    assert detect_anomalies(initial, final, clean_slab) == ["non_finite"]
    final = initial.copy()
    forces = np.zeros((len(final), 3))
    final.calc = SinglePointCalculator(final, energy=-1.0, forces=forces)
    assert detect_anomalies(initial, final, clean_slab) == []
    forces[3, 0] = np.inf
    final.calc = SinglePointCalculator(final, energy=-1.0, forces=forces)
    assert detect_anomalies(initial, final, clean_slab) == ["non_finite"]
    final.calc = SinglePointCalculator(final, energy=np.nan)
    assert detect_anomalies(initial, final, clean_slab) == ["non_finite"]


@pytest.mark.parametrize("mult, skin", [(1.5, 0.3), (1.5, 0.0), (2.0, 0.3), (1.2, 0.5)])
def test_desorption_threshold_honours_multiplier_and_skin(clean_slab, mult, skin):
    """*O straight above a top-layer Pt at height h: bonded iff h < mult (r_O + r_Pt) + 2 skin."""
    initial = adslab(clean_slab)
    boundary = bond_radius("O", "Pt", mult, skin)
    settings = AnomalySettings(desorption_mult=mult, skin=skin)
    atom = top_layer(initial)[0]
    for offset, expected in ((-0.05, []), (0.05, ["desorbed"])):
        final = initial.copy()
        final.positions[-1] = initial.positions[atom] + [0.0, 0.0, boundary + offset]
        assert detect_anomalies(initial, final, clean_slab, settings) == expected, (offset, boundary)


@pytest.mark.parametrize("mult, skin", [(1.0, 0.3), (1.2, 0.0), (1.3, 0.1)])
def test_dissociation_threshold_honours_multiplier_and_skin(clean_slab, mult, skin):
    """*OH stretched along z: the O-H bond survives iff d_OH < mult (r_O + r_H) + 2 skin."""
    initial = adslab(clean_slab, "OH")
    boundary = bond_radius("O", "H", mult, skin)
    settings = AnomalySettings(final_slab_mult=mult, skin=skin)
    for offset, expected in ((-0.05, []), (0.05, ["dissociated"])):
        final = initial.copy()
        final.positions[-1] = final.positions[-2] + [0.0, 0.0, boundary + offset]
        assert detect_anomalies(initial, final, clean_slab, settings) == expected, (offset, boundary)


def test_bonds_cross_the_periodic_boundary(clean_slab):
    """Moving the O to the cell's corner (its Pt neighbours are then periodic images) changes nothing."""
    initial = adslab(clean_slab, "OH")
    atom = top_layer(initial)[0]
    boundary = bond_radius("O", "Pt", 1.5, 0.3)
    finals = {"valid": initial.copy(), "dissociated": initial.copy(), "bonded at threshold": initial.copy()}
    finals["dissociated"].positions[-1] = initial.positions[-2] + [3.0, 0.0, 0.0]
    finals["bonded at threshold"].positions[-2:] = initial.positions[atom] + [[0, 0, boundary - 0.05],
                                                                                [0, 0, boundary + 0.92]]
    for name, final in finals.items():
        expected = detect_anomalies(initial, final, clean_slab)
        assert expected == (["dissociated"] if name == "dissociated" else []), name
        shift = [0.2, 0.2, 0.0] - final.positions[-2] * [1, 1, 0]  # the O 0.2 Å from the cell's corner
        moved = [atoms.copy() for atoms in (initial, final, clean_slab)]
        for atoms in moved:
            atoms.translate(shift)
            atoms.wrap()
        assert detect_anomalies(*moved) == expected, name


def oracle(initial: Atoms, final: Atoms, clean: Atoms, settings: AnomalySettings) -> list[str]:
    """The four criteria from minimum-image pairwise distances and covalent radii, without a neighbour list."""
    def bonded(atoms, mult):
        radii = covalent_radii[atoms.numbers]
        distances = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)[1]
        bonds = distances < mult * (radii[:, None] + radii[None, :]) + 2 * settings.skin
        np.fill_diagonal(bonds, False)
        return bonds

    tags = initial.get_tags()
    ads, slab, sub = tags == 2, tags != 2, tags == 0
    m, c = settings.final_slab_mult, settings.init_slab_mult
    final_m, final_c = bonded(final, m), bonded(final, c)
    found = []
    if (bonded(initial, m)[np.ix_(ads, ads)] != final_m[np.ix_(ads, ads)]).any():
        found.append("dissociated")
    if not bonded(final, settings.desorption_mult)[np.ix_(ads, slab)].any():
        found.append("desorbed")
    if ((final_m[np.ix_(slab, slab)] & ~bonded(clean, c)).any()
            or (bonded(clean, m) & ~final_c[np.ix_(slab, slab)]).any()):
        found.append("surface_changed")
    if final_m[np.ix_(ads, sub)].any():
        found.append("intercalated")
    return found


def test_agrees_with_pairwise_distance_oracle(clean_slab):
    rng = np.random.default_rng(14)
    initial = adslab(clean_slab, "OH")
    settings = AnomalySettings()
    seen = set()
    for _ in range(24):
        final = initial.copy()
        final.positions[:-2] += rng.normal(0.0, rng.uniform(0.0, 0.6), (len(final) - 2, 3))
        final.positions[-2, :2] = rng.uniform(0.0, 1.0, 2) @ final.cell[:2, :2]  # anywhere, edges included
        final.positions[-2, 2] += rng.uniform(-3.5, 2.5)
        final.positions[-1] = final.positions[-2] + rng.uniform(-2.0, 2.0, 3)
        found = detect_anomalies(initial, final, clean_slab, settings)
        assert found == oracle(initial, final, clean_slab, settings)
        seen.update(found)
    assert seen == set(ANOMALIES) - {"non_finite"}  # every criterion was exercised both ways
    # ... and a clean case too
    assert oracle(initial, initial, clean_slab, settings) == detect_anomalies(initial, initial, clean_slab) == []


@pytest.mark.parametrize("field, value", [("final_slab_mult", 0.0), ("init_slab_mult", -1.0),
                                          ("desorption_mult", float("nan")), ("skin", -0.1),
                                          ("intercalation", "yes")])
def test_bad_settings(field, value):
    with pytest.raises(ValueError, match=field):
        AnomalySettings(**{field: value})


def test_bad_configurations(clean_slab):
    initial = adslab(clean_slab)
    with pytest.raises(ValueError, match="differ in size"):
        detect_anomalies(initial, initial[:-1])
    swapped = initial.copy()
    swapped[-1].symbol = "N"
    with pytest.raises(ValueError, match="chemical symbols"):
        detect_anomalies(initial, swapped)
    with pytest.raises(ValueError, match="no adsorbate atom"):
        detect_anomalies(clean_slab, clean_slab)
    with pytest.raises(ValueError, match="does not match"):
        detect_anomalies(initial, initial, clean_slab[:-1])
    wider = clean_slab.copy()
    wider.cell[0] *= 1.1
    with pytest.raises(ValueError, match="cell"):
        detect_anomalies(initial, initial, wider)
    retagged = initial.copy()
    retagged.set_tags(np.where(retagged.get_tags() == 1, 3, retagged.get_tags()))
    with pytest.raises(ValueError, match="tags"):
        detect_anomalies(retagged, retagged)


def test_plots(clean_slab, tmp_path):
    ml = {"heur0": -1.2, "heur1": -0.9, "rand0": float("nan"), "rand1": -1.5, "rand2": 0.3}
    anomalies = {"heur0": [], "rand1": ["surface_changed"], "rand2": ["dissociated", "desorbed"]}
    spread = plot_energy_spread(tmp_path / "spread.png", "*O on Pt(111)", ml, anomalies,
                                verified={"heur0": -1.1, "heur1": float("nan")}, best="heur0")
    picture = plot_configuration(tmp_path / "best.png", adslab(clean_slab), "*O on Pt(111), heur0")
    only_nan = plot_energy_spread(tmp_path / "nan.png", "none", {"rand0": float("nan")}, {})
    for path in (spread, picture, only_nan):
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="no ML energy"):
        plot_energy_spread(tmp_path / "x.png", "x", ml, anomalies, best="heur9")
