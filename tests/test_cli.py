"""The command line runs a real MD job, lists models, and turns bad input into one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ase.io import read

from workflows.cli import main
from tests.conftest import cli_error_line

ROOT = Path(__file__).resolve().parents[1]


def test_md_command_runs_and_writes_trajectory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    traj = tmp_path / "md.traj"
    assert main(["md", "--steps", "20", "--device", "cpu", "--trajectory", str(traj), "--interval", "5"]) == 0
    out = capsys.readouterr().out
    assert "NVE MD: 20 steps" in out and "108 atoms" in out
    frames = read(traj, ":")
    assert len(frames) == 5  # steps 0, 5, 10, 15, 20
    assert frames[-1].calc.results["forces"].shape == (108, 3)


def test_models_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    assert "lj-argon" in capsys.readouterr().out


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--timestep-fs", "-1", "> 0 [fs]"),
    ("--timestep-fs", "0", "> 0 [fs]"),
    ("--timestep-fs", "nan", "> 0 [fs]"),
    ("--timestep-fs", "inf", "> 0 [fs]"),
    ("--timestep-fs", "five", "> 0 [fs]"),
    ("--temperature-K", "-10", ">= 0 [K]"),
    ("--temperature-K", "nan", ">= 0 [K]"),
    ("--temperature-K", "1e400", ">= 0 [K]"),
    ("--steps", "-1", "integer >= 0 [steps]"),
    ("--steps", "2.5", "integer >= 0 [steps]"),
    ("--interval", "0", "integer >= 1 [steps]"),
    ("--interval", "-5", "integer >= 1 [steps]"),
])
def test_numeric_arguments_out_of_range_are_refused(
    flag: str, value: str, expected: str, capsys: pytest.CaptureFixture
) -> None:
    # --steps 1 keeps the run short where an argument that should be refused is accepted
    argv = ["md", "--device", "cpu", "--steps", "1", flag, value]
    err = cli_error_line(argv, capsys)
    assert f"argument {flag}: " in err and expected in err and repr(value) in err


def test_unknown_device_is_refused(capsys: pytest.CaptureFixture) -> None:
    err = cli_error_line(["md", "--steps", "1", "--device", "tpu"], capsys)
    assert "argument --device" in err and "'tpu'" in err


def test_bad_model_name_exits_with_a_message(capsys: pytest.CaptureFixture) -> None:
    err = cli_error_line(["md", "--model", "missing-model", "--steps", "1", "--device", "cpu"], capsys)
    assert "neither a checkpoint file nor a registered model" in err


def test_missing_structure_file_exits_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "POSCAR"
    err = cli_error_line(["md", "--structure", str(missing), "--steps", "1", "--device", "cpu"], capsys)
    assert "argument --structure" in err and str(missing) in err


@pytest.mark.parametrize(("name", "content"), [("notes.txt", "not a structure\n"), ("bad.xyz", "garbage\nx\n"),
                                               ("empty.xyz", "")])
def test_unreadable_structure_file_exits_with_a_message(
    name: str, content: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / name
    path.write_text(content)
    err = cli_error_line(["md", "--structure", str(path), "--steps", "1", "--device", "cpu"], capsys)
    assert f"cannot read structure file {str(path)!r}" in err


def test_trajectory_in_missing_folder_exits_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    traj = tmp_path / "missing" / "md.traj"
    err = cli_error_line(["md", "--steps", "1", "--device", "cpu", "--trajectory", str(traj)], capsys)
    assert str(traj) in err


def test_help_gives_every_md_flag_a_unit_or_meaning(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["md", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag, text in [("--timestep-fs FS", "in fs"), ("--temperature-K K", "in K"), ("--steps N", "steps"),
                       ("--interval N", "steps between"), ("--structure FILE", "ase.io.read"),
                       ("--model MODEL", "checkpoint"), ("--device DEVICE", "cuda"), ("--logfile FILE", "eV")]:
        assert flag in out and text in out.rsplit(flag, 1)[1][:150], flag  # the options list follows the usage


def test_command_line_refuses_a_negative_time_step_in_one_line() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "workflows.cli", "md", "--steps", "1", "--timestep-fs", "-1"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr == ("equicalc: error: argument --timestep-fs: must be a finite number > 0 [fs], got '-1' "
                             "(see 'equicalc md --help')\n")
