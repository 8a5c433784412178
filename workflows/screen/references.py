"""Gas-phase references of the adsorption energy: one energy per element, E_ads = E(adslab) - E(slab) - Σ ε_Z.

OC20 (Chanussot et al., ACS Catal. 11, 6059 (2021), SI) references the adsorbate's atoms to four gas
molecules, ε_H = ½E(H₂), ε_O = E(H₂O) - 2ε_H, ε_C = E(CO) - ε_O, ε_N = ½E(N₂); its RPBE values are
:data:`OC20_REFERENCES`. Gas energies must be on the scale of the total energies they are subtracted
from: those of the same calculator, or of the reference a model was trained to reproduce (fairchem
2.x subtracts DFT gas energies from its models' total energies); a DFT value against an EMT total
energy is meaningless. ``"elements"`` relaxes the four molecules with a given calculator and applies
the scheme. ``"molecule"`` references the
adsorbate to its own gas-phase molecule relaxed with the same calculator,
E_ads = E(adslab) - E(slab) - E(adsorbate, gas): it needs no table, works for any adsorbate, and stays
within what a potential trained on adsorbates and their gas molecules has seen (H₂ may not be).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import BaseCalculator

from workflows.data.adsorbates import boxed
from workflows.relax.single import relax

#: ε_Z of OC20 [eV] (RPBE, VASP), as fairchem 2.x's AdsorbML recipe uses them.
OC20_REFERENCES: dict[str, float] = {"H": -3.477, "O": -7.204, "C": -7.282, "N": -8.083}
#: the gas molecules of the scheme, in the order their energies are needed.
REFERENCE_MOLECULES: tuple[str, ...] = ("H2", "H2O", "CO", "N2")


def molecule_references(calculator: BaseCalculator, fmax: float = 0.01, steps: int = 200) -> dict[str, float]:
    """ε_H, ε_O, ε_C, ε_N [eV] from H₂, H₂O, CO and N₂ relaxed (BFGS to ``fmax`` eV/Å) with ``calculator``.

    Raises:
        ValueError: a molecule's energy is not finite (the calculator fails on it, or lacks an element).
    """
    energy = {name: gas_energy(molecule(name), calculator, fmax, steps) for name in REFERENCE_MOLECULES}
    h = 0.5 * energy["H2"]
    o = energy["H2O"] - 2.0 * h
    return {"H": h, "O": o, "C": energy["CO"] - o, "N": 0.5 * energy["N2"]}


def gas_energy(gas: Atoms, calculator: BaseCalculator, fmax: float = 0.01, steps: int = 200) -> float:
    """The energy [eV] of the molecule ``gas`` relaxed (BFGS to ``fmax`` eV/Å) alone in a 12 Å box.

    Raises:
        ValueError: the calculator fails on it or gives a non-finite energy.
    """
    name = gas.get_chemical_formula()
    gas = boxed(gas)
    try:
        result = relax(gas, calculator, optimizer="BFGS", fmax=fmax, steps=steps, fix="none")
    except Exception as err:  # any calculator's failure, named
        raise ValueError(f"gas reference {name}: the calculator failed ({type(err).__name__}: {err})") from err
    energy = result.energies[-1]
    if result.error or not np.isfinite(energy):
        raise ValueError(f"gas reference {name}: no finite energy ({result.error or energy})")
    return float(energy)


def adsorbate_reference(symbols: Iterable[str], references: Mapping[str, float]) -> float:
    """Σ ε_Z over the adsorbate's atoms [eV].

    Raises:
        ValueError: an element with no reference, named with the ones there are.
    """
    symbols = list(symbols)
    missing = sorted(set(symbols) - set(references))
    if missing:
        raise ValueError(f"no gas-phase reference for {', '.join(missing)} (references exist for "
                         f"{', '.join(sorted(references))}; give them with gas_references)")
    return float(sum(references[s] for s in symbols))


def check_references(references: Mapping[str, float]) -> dict[str, float]:
    """``references`` as a plain dict of finite floats; ``ValueError`` naming a bad entry."""
    checked = {}
    for symbol, value in references.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"gas reference of {symbol!r} is not a number: {value!r}") from None
        if not np.isfinite(value):
            raise ValueError(f"gas reference of {symbol!r} is not finite: {value}")
        checked[str(symbol)] = value
    return checked
