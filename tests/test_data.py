"""``equicalc data``: the OC20-style reference data generator (tiny sizes, EMT)."""

from __future__ import annotations

import json
import math

import ase.db
import numpy as np
import pytest
from ase.calculators.emt import EMT

from workflows.cli import main
from workflows.data import generate_dataset
from workflows.data.plan import OOD_FACET, OOD_PAIRS, SPLITS


class NaNForOxygen(EMT):
    """EMT, except that any structure with an oxygen atom gets NaN energy and forces."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        if "O" in self.atoms.get_chemical_symbols():
            self.results["energy"] = math.nan
            self.results["forces"] = np.full_like(self.results["forces"], np.nan)


class InterruptingEMT(EMT):
    """EMT that raises KeyboardInterrupt at its ``budget``-th calculation (``None``: never)."""

    budget: int | None = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        if InterruptingEMT.budget is not None:
            InterruptingEMT.budget -= 1
            if InterruptingEMT.budget < 0:
                raise KeyboardInterrupt
        super().calculate(atoms, properties, system_changes)


def strict_emt() -> EMT:
    """EMT from a factory that takes no keyword arguments."""
    return EMT()


def rows(path) -> list:
    return list(ase.db.connect(path).select())


def assert_same_rows(a: list, b: list, ignore: tuple[str, ...] = ()) -> None:
    """Every row of ``a`` equals the row of ``b`` at its place: structure, labels and key-values."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x.positions, y.positions)
        assert np.array_equal(x.numbers, y.numbers)
        assert np.array_equal(x.cell, y.cell) and np.array_equal(x.pbc, y.pbc)
        assert np.array_equal(x.toatoms().get_tags(), y.toatoms().get_tags())
        assert x.energy == y.energy
        assert np.array_equal(x.forces, y.forces)
        assert np.array_equal(x.get("stress"), y.get("stress"))
        assert [str(c.todict()) for c in x.constraints] == [str(c.todict()) for c in y.constraints]
        strip = lambda kvp: {k: v for k, v in kvp.items() if k not in ignore}  # noqa: E731
        assert strip(x.key_value_pairs) == strip(y.key_value_pairs)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny EMT data set, seed 3, written by one process."""
    return generate_dataset(tmp_path_factory.mktemp("data") / "tiny.db", seed=3, size="tiny", workers=1,
                            progress=False)


def test_same_seed_same_database_with_two_workers(tiny, tmp_path):
    again = generate_dataset(tmp_path / "again.db", seed=3, size="tiny", workers=2, progress=False)
    assert_same_rows(rows(tiny), rows(again))


def test_resumed_run_equals_uninterrupted_run(tiny, tmp_path):
    path = tmp_path / "resumed.db"
    labeller = "tests.test_data:InterruptingEMT"
    InterruptingEMT.budget = 600
    try:
        with pytest.raises(KeyboardInterrupt):
            generate_dataset(path, seed=3, size="tiny", labeller=labeller, workers=1, progress=False)
    finally:
        InterruptingEMT.budget = None
    db = ase.db.connect(path)
    done = db.metadata["done"]
    assert 0 < len(done) < 21
    # a system cut short after some of its rows were written: its rows must go
    partial = next(row for row in rows(tiny) if row.system not in done)
    db.write(partial.toatoms(), **partial.key_value_pairs)
    generate_dataset(path, seed=3, size="tiny", labeller=labeller, workers=1, progress=False)
    resumed = rows(path)
    assert {row.labeller for row in resumed} == {labeller}
    assert_same_rows(rows(tiny), resumed, ignore=("labeller",))


def test_frames_are_tagged_and_fixed_as_in_oc20(tiny):
    sources = set()
    for row in rows(tiny):
        atoms = row.toatoms()
        sources.add(row.source)
        if row.facet in ("bulk", "gas"):
            assert not atoms.constraints and set(atoms.get_tags()) == {0}
            assert (row.get("stress") is not None) == (row.facet == "bulk")
            assert list(atoms.pbc) == [row.facet == "bulk"] * 3
            continue
        tags = atoms.get_tags()
        assert list(atoms.pbc) == [True, True, False]
        assert (tags == 2).any() == (row.adsorbate != "clean")
        assert set(tags) <= {0, 1, 2}
        (fixed,) = atoms.constraints
        assert sorted(fixed.index) == list(np.flatnonzero(tags == 0))
        z = atoms.positions[:, 2]
        assert z[tags == 0].max() < z[tags == 1].min()
        assert row.get("stress") is None
        assert (row.source == "md") == ("temperature" in row)
    assert sources == {"bulk", "gas", "slab", "relax", "rattle", "md"}
    # forces on fixed atoms are stored as the labeller gave them, not zeroed
    row = next(r for r in rows(tiny) if r.source == "rattle")
    assert np.abs(row.forces[row.tags == 0]).max() > 0


def test_splits_are_by_system_and_ood_is_held_out(tiny):
    split_of = {}
    for row in rows(tiny):
        assert split_of.setdefault(row.system, row.split) == row.split
        if row.facet == f"({OOD_FACET})" or (row.bulk, row.adsorbate) in OOD_PAIRS:
            assert row.split == "test_ood"
        elif row.facet in ("bulk", "gas"):
            assert row.split == "train"
        else:
            assert row.split != "test_ood"
    assert set(split_of.values()) == set(SPLITS)


def test_data_card_counts_the_database(tiny):
    card = json.loads(tiny.with_name(tiny.name + ".card.json").read_text())
    n = ase.db.connect(tiny).count()
    assert card["frames"] == n == sum(card["frames_per"]["split"].values()) == sum(card["frames_per"]["source"].values())
    assert card["systems"]["planned"] == card["systems"]["finished"] == 21
    assert "test_ood" in tiny.with_name(tiny.name + ".card.md").read_text()
    assert tiny.with_name(tiny.name + ".card.png").stat().st_size > 0


def test_frames_the_labeller_cannot_label_are_counted_and_left_out(tmp_path):
    path = generate_dataset(tmp_path / "nan.db", seed=0, size=8, labeller="tests.test_data:NaNForOxygen",
                            workers=1, progress=False)
    db = ase.db.connect(path)
    assert db.count() > 0
    assert all(8 not in row.numbers and np.isfinite(row.energy) for row in db.select())
    rejected = sum(record["rejected"].get("non_finite", 0) for record in db.metadata["done"].values())
    card = json.loads((tmp_path / "nan.db.card.json").read_text())
    assert card["rejected"]["non_finite"] == rejected > 0


@pytest.mark.parametrize("options, message", [
    ({"labeller": "nonsense"}, "unknown labeller 'nonsense'"),
    ({"labeller": "ase.calculators.emt:Missing"}, "has no callable 'Missing'"),
    ({"labeller": "emt", "labeller_kwargs": "{bad json"}, "not valid JSON"),
    ({"labeller": "tests.test_data:strict_emt", "labeller_kwargs": {"nonsense": 1}},
     "does not accept the keyword arguments"),
    ({"elements": {"Cu", "Fe", "O"}}, "has no parameters for Fe"),
    ({"elements": {"Cu", "Xx"}}, "not chemical elements: Xx"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"size": "huge"}, "unknown size 'huge'"),
    ({"size": 0}, "size must be at least 1 system"),
])
def test_bad_options_are_refused_clearly(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path / "bad.db", progress=False, **options)
    assert not (tmp_path / "bad.db").exists()


def test_unwritable_path_and_other_options_on_resume_are_refused(tiny, tmp_path):
    with pytest.raises(FileNotFoundError):
        generate_dataset(tmp_path / "missing" / "x.db", size="tiny", progress=False)
    with pytest.raises(ValueError, match="made with other options: seed=3 \\(now 4\\)"):
        generate_dataset(tiny, seed=4, size="tiny", progress=False)


def test_command_line(tmp_path, capsys):
    assert main(["data", str(tmp_path / "one.db"), "--size", "1", "--quiet", "--workers", "1"]) == 0
    assert ase.db.connect(tmp_path / "one.db").count() > 0
    with pytest.raises(SystemExit) as exit_info:
        main(["data", str(tmp_path / "x.db"), "--seed", "-1"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["data", str(tmp_path / "x.db"), "--labeller", "nonsense"])
    assert exit_info.value.code == 2
    assert "equicalc: error: unknown labeller 'nonsense'" in capsys.readouterr().err
