"""The data card written beside a data set: ``<db>.card.md``, ``<db>.card.json``, ``<db>.card.png``.

It counts frames per split, element, facet, adsorbate, source and labeller, systems per split, and
rejected frames per reason, and summarises the energy per atom (eV/atom) and force magnitude (eV/Å,
every atom) distributions, which the PNG plots per split.
"""

from __future__ import annotations

import json
import pathlib
from collections import Counter, defaultdict
from typing import Any

import ase.db
import numpy as np
from ase.data import chemical_symbols

from .frames import REASONS
from .plan import OOD_FACET, OOD_PAIRS, SPLITS


def write_card(path: pathlib.Path) -> dict[str, Any]:
    """Write the data card of the data set at ``path`` and return its contents (the JSON's)."""
    db = ase.db.connect(path, type="db")
    metadata = db.metadata
    counts: dict[str, Counter] = defaultdict(Counter)
    systems: dict[str, set] = defaultdict(set)
    energy: dict[str, list[float]] = defaultdict(list)
    force: dict[str, list[np.ndarray]] = defaultdict(list)
    for row in db.select():
        split = row.split
        counts["split"][split] += 1
        systems[split].add(row.system)
        for key in ("facet", "adsorbate", "source", "labeller"):
            counts[key][row.get(key)] += 1
        for number, n in zip(*np.unique(row.numbers, return_counts=True)):
            counts["element_frames"][chemical_symbols[number]] += 1
            counts["element_atoms"][chemical_symbols[number]] += int(n)
        energy[split].append(row.energy / row.natoms)
        force[split].append(np.linalg.norm(row.forces, axis=1))
    rejected: Counter = Counter()
    for record in metadata.get("done", {}).values():
        rejected.update(record["rejected"])
    forces = {split: np.concatenate(values) for split, values in force.items()}
    card = {
        "database": str(path),
        "options": {key: metadata.get(key) for key in ("seed", "size", "labeller", "labeller_kwargs", "elements")},
        "frames": db.count(),
        "systems": {"planned": metadata.get("systems"), "finished": len(metadata.get("done", {})),
                    **{split: len(systems[split]) for split in SPLITS}},
        "frames_per": {key: dict(sorted(value.items())) for key, value in counts.items()},
        "rejected": {reason: rejected.get(reason, 0) for reason in REASONS},
        "energy_per_atom_eV": {split: _summary(np.array(values)) for split, values in energy.items()},
        "force_magnitude_eV_per_A": {split: _summary(values) for split, values in forces.items()},
        "ood_rule": {"facet": OOD_FACET, "pairs": sorted(map(list, OOD_PAIRS))},
    }
    pathlib.Path(f"{path}.card.json").write_text(json.dumps(card, indent=1) + "\n")
    plot = pathlib.Path(f"{path}.card.png")
    _plot(energy, forces, plot)
    pathlib.Path(f"{path}.card.md").write_text(_markdown(card, plot.name))
    return card


def _summary(values: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, minimum, median and maximum of ``values``."""
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "median": float(np.median(values)), "max": float(values.max())}


def _plot(energy: dict[str, list[float]], forces: dict[str, np.ndarray], path: pathlib.Path) -> None:
    """Histograms of the energy per atom and the force magnitude, one line per split, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    all_energy = np.concatenate([np.asarray(v) for v in energy.values()])
    all_force = np.log10(np.maximum(np.concatenate(list(forces.values())), 1e-4))
    energy_bins = np.linspace(all_energy.min(), all_energy.max() + 1e-9, 80)
    force_bins = np.linspace(all_force.min(), all_force.max() + 1e-9, 80)
    for split in SPLITS:
        if split in energy:
            left.hist(energy[split], bins=energy_bins, histtype="step", label=split)
            right.hist(np.log10(np.maximum(forces[split], 1e-4)), bins=force_bins, histtype="step", label=split)
    left.set_yscale("log")
    right.set_yscale("log")
    left.set(xlabel="energy per atom (eV/atom)", ylabel="frames", title="energy")
    right.set(xlabel="log10 force magnitude (eV/Å), every atom", ylabel="atoms", title="forces")
    left.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _markdown(card: dict[str, Any], plot_name: str) -> str:
    """The card as Markdown."""
    options = card["options"]
    lines = [
        f"# Data card: {pathlib.Path(card['database']).name}", "",
        f"OC20-style adsorption data labelled by `{options['labeller']}` "
        f"(keyword arguments {json.dumps(options['labeller_kwargs'])}), size `{options['size']}`, "
        f"seed {options['seed']}, elements {', '.join(options['elements'])}.", "",
        f"{card['frames']} frames from {card['systems']['finished']} of {card['systems']['planned']} "
        "planned systems.", "",
        f"Splits are drawn by system (a bulk, a molecule, a clean slab or one adsorbate placement with "
        f"its relaxation, rattled copies and MD), never by frame. `test_ood` holds every ({card['ood_rule']['facet']}) "
        f"system and the adsorbate-bulk pairs "
        f"{', '.join(f'*{a} on {b}' for b, a in card['ood_rule']['pairs'])} on every facet; bulks and "
        "molecules are `train`; the other slab systems are 10 % `val`, 10 % `test_id`, the rest `train`.", "",
        "Forces are stored on every atom, fixed ones included: read them with "
        "`atoms.get_forces(apply_constraint=False)` or `row.forces`.", "",
    ]
    lines += _table("split", ["frames", "systems"],
                    {s: [card["frames_per"]["split"].get(s, 0), card["systems"][s]] for s in SPLITS})
    elements = card["frames_per"].get("element_frames", {})
    lines += _table("element", ["frames containing it", "atoms"],
                    {e: [n, card["frames_per"]["element_atoms"][e]] for e, n in elements.items()})
    for key in ("facet", "adsorbate", "source"):
        lines += _table(key, ["frames"], {k: [n] for k, n in card["frames_per"].get(key, {}).items()})
    lines += ["Rejected frames (left out of the database):", ""]
    lines += _table("reason", ["frames", "meaning"], {r: [n, REASONS[r]] for r, n in card["rejected"].items()})
    for title, key, unit in (("Energy per atom", "energy_per_atom_eV", "eV/atom"),
                             ("Force magnitude, every atom", "force_magnitude_eV_per_A", "eV/Å")):
        lines += [f"{title} ({unit}):", ""]
        lines += _table("split", ["mean", "std", "min", "median", "max"],
                        {s: [f"{v:.4g}" for v in card[key][s].values()] for s in SPLITS if s in card[key]})
    lines += [f"![energy and force distributions]({plot_name})", ""]
    return "\n".join(lines)


def _table(first: str, columns: list[str], rows: dict[str, list]) -> list[str]:
    """A Markdown table, then a blank line."""
    return [f"| {first} | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|",
            *(f"| {name} | {' | '.join(map(str, values))} |" for name, values in rows.items()), ""]
