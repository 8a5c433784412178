"""The command line runs a real MD job and lists models."""

from __future__ import annotations

from pathlib import Path

import pytest
from ase.io import read

from equicalc.cli import main


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


def test_bad_model_name_exits_with_a_message(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["md", "--model", "missing-model", "--steps", "1"])
    assert exc.value.code == 2
    assert "neither a checkpoint file nor a registered model" in capsys.readouterr().err
