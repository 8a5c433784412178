"""``equicalc screen``'s command line: failed systems in report.csv, the pictures written, reference
keyword arguments checked, ``--energy`` checked against what the model predicts."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
from pathlib import Path

import pytest
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT

from workflows.cli import main
from workflows.data.labellers import accepted_keywords, resolve_labeller
from workflows.screen.models import ScreenModel, energy_kind, load_screen_model
from workflows.screen.report import COLUMNS, energy_note
from workflows.screen.settings import ScreenSettings

from .conftest import cli_error_line

#: a one-placement screen of *O on Pt(111), quick on CPU
FAST = ["screen", "--bulk", "Pt", "--miller", "111", "--adsorbate", "O", "--model", "sake-emt-oc", "--dtype",
        "float64", "--no-heuristic", "--num-random", "1", "--top-k", "1", "--fmax", "0.05", "--steps", "60",
        "--workers", "0"]
#: a model that screens Pt(111) and fails on Cu(111) (its clean slab): one system of two fails
FAILING_ON_CU = ["--model", "tests.test_screen_cli:NaNOnCleanCuEMT", "--reference", "none",
                 "--gas-references", "oc20"]


class NaNOnCleanCuEMT(EMT):
    """EMT whose energy is NaN for a clean Cu slab (no adsorbate atom, tag 2)."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        if "Cu" in atoms.get_chemical_symbols() and not (atoms.get_tags() == 2).any():
            self.results["energy"] = float("nan")


def screen(argv: list[str]) -> tuple[int, str]:
    """``equicalc argv``: its exit code and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    return code, printed.getvalue()


def report_rows(out: Path) -> list[dict[str, str]]:
    """The rows of ``out/report.csv``, checking its header."""
    with open(out / "report.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, int, str]:
    """A screen of Pt(111) and Cu(111) with a model failing on Cu: its folder, exit code and output."""
    out = tmp_path_factory.mktemp("mixed")
    code, printed = screen([*FAST, "--bulk", "Pt", "Cu", *FAILING_ON_CU, "--out", str(out)])
    return out, code, printed


def test_failed_system_is_a_row_of_the_report_with_its_error(mixed):
    out, code, _ = mixed
    rows = {row["system"]: row for row in report_rows(out)}
    assert code == 1 and set(rows) == {"Pt/111/O", "Cu/111/O"}
    assert rows["Cu/111/O"]["error"].startswith("the model fails on the clean slab")
    assert rows["Cu/111/O"]["placements"] == "" and rows["Pt/111/O"]["error"] == ""
    assert rows["Pt/111/O"]["placements"] == "1"


def test_failure_is_printed_once_and_summed_up_by_name(mixed):
    _, _, printed = mixed
    assert printed.count("the model fails on the clean slab") == 1
    assert "1 of 2 systems failed (Cu/111/O)" in printed and "(no systems)" not in printed


def test_pictures_line_names_the_files_written(mixed):
    out, _, printed = mixed
    [line] = [line for line in printed.splitlines() if line.startswith("pictures: ")]
    paths = line.removeprefix("pictures: ").split(", ")
    assert paths == [str(out / "Pt-111-O_energies.png"), str(out / "Pt-111-O_best.png")]
    assert all(Path(path).is_file() for path in paths) and not list(out.glob("Cu-*.png"))


def test_unknown_model_energy_is_said_in_the_report(mixed):
    """A ``module:Name`` calculator does not say what it predicts: the note says what it was taken for."""
    _, _, printed = mixed
    assert "(taken for total energies by default: the model does not say what it predicts)" in printed


def test_no_system_screened_prints_no_table_and_no_pictures(tmp_path):
    code, printed = screen([*FAST, "--bulk", "Cu", *FAILING_ON_CU, "--out", str(tmp_path)])
    [row] = report_rows(tmp_path)
    assert code == 1 and row["system"] == "Cu/111/O" and row["error"].startswith("the model fails")
    assert "no system was screened (Cu/111/O)" in printed
    assert "(no systems)" not in printed and "pictures:" not in printed


@pytest.mark.parametrize(("arguments", "message"), [
    (["--reference", "none", "--reference-kwargs", '{"a": 1}'], "--reference-kwargs given with --reference none"),
    (["--energy", "adsorption"], "--energy adsorption: model 'sake-emt-oc' predicts total energies"),
    (["--model", "emt", "--energy", "adsorption"], "model 'emt' predicts total energies"),
])
def test_cli_refuses_in_one_line(tmp_path, capsys, arguments, message):
    assert message in cli_error_line([*FAST, *arguments, "--out", str(tmp_path / "out")], capsys)
    assert not (tmp_path / "out" / "Pt-111-O.db").exists()


def any_emt(**kwargs) -> EMT:
    """A factory that takes any keyword argument and cannot say which."""
    return EMT()


def explicit_emt(asap_cutoff: bool = False) -> EMT:
    """A factory whose signature names its keyword arguments."""
    return EMT(asap_cutoff=asap_cutoff)


class SevenNetLike(Calculator):
    """SevenNetCalculator's signature: named arguments, ``**kwargs`` and no ``default_parameters``."""

    def __init__(self, model: str = "7net-0", device: str = "auto", **kwargs):
        super().__init__(**kwargs)


def test_reference_keywords_are_checked_where_the_calculator_says_which_it_takes():
    assert resolve_labeller("emt", {"asap_cutoff": True}).calculator().parameters["asap_cutoff"] is True
    assert resolve_labeller("ase.calculators.lj:LennardJones", '{"sigma": 2.0}').kwargs == {"sigma": 2.0}
    with pytest.warns(UserWarning, match=r"keyword arguments eps \(it accepts .*epsilon, .*sigma.*passed on"):
        resolve_labeller("ase.calculators.lj:LennardJones", {"eps": 1.0})  # QChem, Psi4 take more than they list
    with pytest.raises(ValueError, match=r"keyword arguments cutoff \(it accepts asap_cutoff\)"):
        resolve_labeller("tests.test_screen_cli:explicit_emt", {"cutoff": 1.0})
    assert resolve_labeller("tests.test_screen_cli:any_emt", {"anything": 1}).kwargs == {"anything": 1}
    assert accepted_keywords(SevenNetLike) is None  # passed on, as sevenn's documented ones are


def oc20_like() -> ScreenModel:
    """The shipped SAKE model with a fairchem checkpoint's metadata: taken for OC20's (adsorption energies)."""
    potential = copy.deepcopy(load_screen_model("sake-emt-oc", dtype="float64").potential)
    potential.metadata = {**potential.metadata, "format": "fairchem-1.x"}
    return ScreenModel("oc20-like", potential=potential)


def test_energy_kind_contradicting_the_model_is_refused():
    shipped, unknown = load_screen_model("sake-emt-oc", dtype="float64"), load_screen_model("ase.calculators.emt:EMT")
    assert energy_kind(oc20_like(), "auto") == "adsorption" and energy_kind(shipped, "auto") == "total"
    assert energy_kind(oc20_like(), "total") == "total"  # a fairchem checkpoint may be OC22's: total energies
    with pytest.raises(ValueError, match="--energy adsorption: model 'sake-emt-oc' predicts total energies"):
        energy_kind(shipped, "adsorption")
    assert energy_kind(unknown, "adsorption") == "adsorption" and unknown.known_energy is None
    note = energy_note("adsorption", ScreenSettings(energy="adsorption"), unchecked=True)
    assert note.endswith("(taken for adsorption energies by --energy adsorption: the model does not say what it "
                         "predicts)")
    assert "does not say" not in energy_note("total", ScreenSettings())


class DirectoryEMT(EMT):
    """EMT that notes the directory it runs in (a file-based calculator writes its files there)."""

    seen: set[str] = set()

    def calculate(self, *args, **kwargs):
        DirectoryEMT.seen.add(str(self.directory))
        super().calculate(*args, **kwargs)


def test_reference_of_each_system_works_in_its_own_folder(tmp_path):
    """Systems screened at once never share a file-based reference's folder: each has <store>.calc/;
    a directory the user gives in --reference-kwargs wins."""
    assert resolve_labeller("emt").in_directory(tmp_path / "a").calculator().directory == str(tmp_path / "a")
    given = resolve_labeller("ase.calculators.emt:EMT", {"directory": str(tmp_path / "mine")})
    assert given.in_directory(tmp_path / "a").calculator().directory == str(tmp_path / "mine")
    DirectoryEMT.seen.clear()
    out = tmp_path / "out"
    main([*FAST, "--bulk", "Pt", "Cu", "--reference", "tests.test_screen_cli:DirectoryEMT", "--out", str(out)])
    assert DirectoryEMT.seen == {f"{out / 'Pt-111-O.db'}.calc", f"{out / 'Cu-111-O.db'}.calc"}
