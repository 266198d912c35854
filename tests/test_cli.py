"""`python -m torch_visualization summary LOGDIR` on real event files."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys

import pytest

from torch_visualization import cli


def _write_runs(logdir):
    """`sick`: vanishing, exploding, dead and NaN layers; `fine`: none."""
    from torch_visualization import SummaryWriter

    sick = SummaryWriter(os.path.join(logdir, "sick"))
    for step in (0, 10, 20):
        sick.add_gradient_bars("gradients/norm", {
            "first.weight": 1e-9 if step >= 10 else 0.5,   # falls below the floor at 10
            "mid.weight": 2e-5,                           # < 1e-4 x the largest: vanishing
            "near.weight": 2e-4,                          # vanishing only next to 5e3
            "last.weight": 0.5 if step < 20 else 5e3,     # explodes at 20
            "head.bias": float("nan") if step == 20 else 0.3,
        }, step)
        sick.add_gradient_bars("activations/zero_fraction", {
            "relu1": 0.97, "relu2": 0.2,
        }, step)
    sick.close()

    fine = SummaryWriter(os.path.join(logdir, "fine"))
    for step in (0, 5):
        fine.add_gradient_bars("gradients/norm", {"a": 0.1, "b": 0.02}, step)
        fine.add_gradient_bars("activations/zero_fraction", {"relu": 0.4}, step)
        fine.add_class_pie("outputs/classes", [1.0, 2.0], step, class_names=["x", "y"])
    fine.close()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cli"))
    _write_runs(path)
    return path


def _run(*argv):
    out = io.StringIO()
    status = cli.main(list(argv), stdout=out)
    return status, out.getvalue()


def test_json_findings_name_layers_steps_and_problems(logdir):
    status, text = _run("summary", logdir, "--json")
    assert status == 0
    report = json.loads(text)
    assert set(report) == {"sick", "fine"}
    assert report["fine"]["gradients"] == []
    assert report["fine"]["dead"] == []
    assert report["fine"]["nonfinite"] == []
    assert report["fine"]["steps"] == [0, 5]

    sick = report["sick"]
    found = {(g["layer"], g["problem"]): g for g in sick["gradients"]}
    assert set(found) == {
        ("first.weight", "vanishing"),
        ("mid.weight", "vanishing"),
        ("near.weight", "vanishing"),
        ("last.weight", "exploding"),
    }
    assert found["first.weight", "vanishing"]["first_step"] == 10
    assert found["first.weight", "vanishing"]["steps"] == 2
    assert found["first.weight", "vanishing"]["worst"] == pytest.approx(1e-9)
    assert found["mid.weight", "vanishing"]["first_step"] == 0
    assert found["mid.weight", "vanishing"]["steps"] == 3
    assert (found["near.weight", "vanishing"]["first_step"],
            found["near.weight", "vanishing"]["steps"]) == (20, 1)
    exploding = found["last.weight", "exploding"]
    assert (exploding["first_step"], exploding["steps"], exploding["last"]) == (20, 1, 5e3)
    assert sick["dead"] == [{"layer": "relu1", "zero_fraction": pytest.approx(0.97), "step": 20}]
    (nonfinite,) = sick["nonfinite"]
    assert nonfinite["tag"] == "gradients/norm"
    assert (nonfinite["first_step"], nonfinite["steps"], nonfinite["last_count"]) == (20, 1, 1)
    assert nonfinite["layers"] == ["head.bias"]


def test_wider_ratio_flags_more_steps(logdir):
    report = json.loads(_run("summary", logdir, "--json", "--ratio", "1e-3")[1])
    found = {(g["layer"], g["problem"]): g for g in report["sick"]["gradients"]}
    assert (found["near.weight", "vanishing"]["first_step"],
            found["near.weight", "vanishing"]["steps"]) == (0, 3)


def test_thresholds_are_options(logdir):
    report = json.loads(_run("summary", logdir, "--json", "--low", "0", "--ratio", "0",
                             "--high", "1e4", "--dead", "0.99")[1])
    assert report["sick"]["gradients"] == []
    assert report["sick"]["dead"] == []


def test_text_report_and_strict_exit_status(logdir):
    status, text = _run("summary", logdir)
    assert status == 0
    assert "run fine" in text and "run sick" in text
    assert "gradient norm first.weight: vanishing from step 10" in text
    assert "gradient norm last.weight: exploding from step 20" in text
    assert "dead units relu1: 97.0% zero outputs at step 20" in text
    assert "non-finite values in gradients/norm: from step 20" in text
    assert "head.bias" in text
    assert _run("summary", logdir, "--strict")[0] == 1


def test_strict_passes_on_a_healthy_run(tmp_path):
    from torch_visualization import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "ok"))
    writer.add_gradient_bars("gradients/norm", {"a": 0.1, "b": 0.05}, 0)
    writer.close()
    status, text = _run("summary", str(tmp_path), "--strict")
    assert status == 0
    assert "gradient norms: nothing flagged" in text
    assert "non-finite values: none" in text


def test_module_entry_point_runs_as_a_program(logdir):
    result = subprocess.run(
        [sys.executable, "-m", "torch_visualization", "summary", logdir, "--strict"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "gradient norm last.weight: exploding" in result.stdout


def test_empty_logdir_and_bad_arguments(tmp_path, capsys):
    assert cli.main(["summary", str(tmp_path)]) == 2
    assert "no torch-visualization runs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["summary", str(tmp_path), "--low", "-1"])
    assert exit_info.value.code == 2
    assert "--low" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["summary", str(tmp_path), "--low", "5", "--high", "1"])
    assert "must not exceed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([])


def test_diagnose_is_usable_from_python(logdir):
    from torch_visualization.reader import read

    report = cli.diagnose(read(logdir), low=0.0, ratio=0.0, high=math.inf, dead=1.0)
    assert report["sick"]["gradients"] == []
    assert report["sick"]["dead"] == []
    assert len(report["sick"]["nonfinite"]) == 1
