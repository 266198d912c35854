"""`python -m torch_visualization summary` on real event files.

The command is a front end on the findings engine: its `--json` document is
the body of the plugin's `GET /findings`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from werkzeug.test import Client

from conftest import make_wsgi_app
from torch_visualization import cli, findings

STEPS = (0, 10, 20, 30, 40, 50)


def _write_runs(logdir):
    """`sick`: vanishing, exploding, dead and NaN layers; `fine`: none."""
    from torch_visualization import SummaryWriter

    sick = SummaryWriter(os.path.join(logdir, "sick"))
    for step in STEPS:
        sick.add_gradient_bars("gradients/norm", {
            "first.weight": 0.5 if step < 20 else 1e-9,   # collapses at 20 (own history)
            "mid.weight": 2e-5,                           # always < 1e-4 x the typical layer
            "near.weight": 0.01,                          # small, but not next to the typical layer
            "last.weight": 0.5 if step < 40 else 2e3,     # explodes at 40
            "head.bias": float("nan") if step == 50 else 0.3,
        }, step)
        sick.add_gradient_bars("activations/zero_fraction", {"relu1": 0.97, "relu2": 0.2}, step)
    sick.close()

    fine = SummaryWriter(os.path.join(logdir, "fine"))
    for step in STEPS:
        fine.add_gradient_bars("gradients/norm", {"a.weight": 0.1, "b.weight": 0.02}, step)
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


def _kinds(report, run):
    return {f["kind"]: f for f in report["runs"][run]}


def test_json_findings_name_layers_steps_and_kinds(logdir):
    status, text = _run("summary", logdir, "--json")
    assert status == 0
    report = json.loads(text)
    assert set(report["runs"]) == {"sick", "fine"}
    assert report["runs"]["fine"] == []
    assert "vanishing_gradients" in report["checks"]

    sick = _kinds(report, "sick")
    assert set(sick) == {"vanishing_gradients", "exploding_gradients", "dead_units", "nonfinite"}
    vanishing = sick["vanishing_gradients"]
    # A layer 10^5 below the exploding one is not "vanishing" for that.
    assert set(vanishing["labels"]) == {"first.weight", "mid.weight"}
    assert vanishing["labels"][0] == "first.weight"  # 1e-9 is the worst
    assert vanishing["first_step"] == 0  # mid.weight, from the start
    # first.weight is 10^8 below the typical parameter: it cannot learn at all.
    assert (vanishing["severity"], vanishing["tag"]) == ("error", "gradients/norm")
    exploding = sick["exploding_gradients"]
    assert (exploding["labels"], exploding["first_step"], exploding["last_step"]) == (["last.weight"], 40, 50)
    assert exploding["value"] == 2e3 and exploding["severity"] == "error"
    dead = sick["dead_units"]
    assert (dead["labels"], dead["first_step"], dead["value"]) == (["relu1"], 0, pytest.approx(0.97))
    nonfinite = sick["nonfinite"]
    assert (nonfinite["labels"], nonfinite["first_step"], nonfinite["tag"]) == (["head.bias"], 50, "gradients/norm")
    assert nonfinite["view"] == {"tag": "gradients/norm", "step": 50}


def test_json_is_strict_and_equals_the_route(logdir):
    text = _run("summary", logdir, "--json")[1]

    def refuse(token):
        raise ValueError("bare %s" % token)

    report = json.loads(text, parse_constant=refuse)
    response = Client(make_wsgi_app(logdir)).get("/data/plugin/torch_visualization/findings")
    assert response.status_code == 200
    assert json.loads(response.get_data()) == report


def test_non_finite_numbers_are_encoded_as_the_http_api_does(tmp_path):
    from torch_visualization import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run"))
    for step in range(4):
        writer.add_scalar("loss", 1.0 if step < 2 else float("nan"), step)
        writer.add_gradient_bars("gradients/norm", {"a.weight": 0.1, "b.weight": 0.1}, step)
    writer.close()
    report = json.loads(_run("summary", str(tmp_path), "--json")[1])
    (finding,) = report["runs"]["run"]
    assert (finding["kind"], finding["first_step"], finding["value"]) == ("loss_divergence", 2, "NaN")


def test_thresholds_are_options(logdir):
    # --ratio 0 and --low 0 leave only the collapse against the layer's own
    # history; --high 1e4 leaves 2e3 alone (4e3 x its start is no explosion
    # either); --dead 0.99 spares 97% zeros.
    report = json.loads(_run("summary", logdir, "--json", "--low", "0", "--ratio", "0",
                             "--high", "1e4", "--dead", "0.99")[1])
    sick = _kinds(report, "sick")
    assert set(sick) == {"vanishing_gradients", "nonfinite"}
    assert sick["vanishing_gradients"]["labels"] == ["first.weight"]
    assert sick["vanishing_gradients"]["first_step"] == 20
    wider = _kinds(json.loads(_run("summary", logdir, "--json", "--ratio", "0.1")[1]), "sick")
    assert "near.weight" in wider["vanishing_gradients"]["labels"]


def _write_transformer_run(logdir):
    """Two heads of a causal 8-position attention collapsing at step 20,
    and a block with a massive activation from step 30."""
    import numpy as np

    from torch_visualization import SummaryWriter, summary

    writer = SummaryWriter(os.path.join(logdir, "gpt"))
    causal = np.tril(np.ones((8, 8)))
    for step in STEPS:
        writer.file_writer.add_summary(summary.attention_summary(
            "attention/attn", np.stack([causal / causal.sum(1, keepdims=True)] * 2),
            original_shape=(2, 8, 8)), step)
        low = 1.2 if step < 20 else 0.05  # a uniform causal map of 8: 1.32 nats
        writer.add_gradient_bars("attention/entropy", {"attn/head0": low, "attn/head1": low + 0.01}, step)
        writer.add_gradient_bars("activations/rms", {"blocks.0": 1.0, "blocks.1": 1.5}, step)
        writer.add_gradient_bars("activations/max_abs", {"blocks.0": 4.0 if step < 30 else 400.0,
                                                         "blocks.1": 6.0}, step)
    writer.close()


def test_transformer_findings_and_their_options(tmp_path):
    _write_transformer_run(str(tmp_path))
    gpt = _kinds(json.loads(_run("summary", str(tmp_path), "--json")[1]), "gpt")
    assert set(gpt) == {"attention_collapse", "activation_outliers"}
    collapse = gpt["attention_collapse"]
    assert (collapse["labels"], collapse["first_step"]) == (["attn/head0", "attn/head1"], 20)
    outliers = gpt["activation_outliers"]
    assert (outliers["labels"], outliers["first_step"], outliers["value"]) == (["blocks.0"], 30, 400.0)
    quiet = json.loads(_run("summary", str(tmp_path), "--json", "--entropy", "0.01", "--outlier", "1000")[1])
    assert quiet["runs"]["gpt"] == []


def test_text_report_and_strict_exit_status(logdir):
    status, text = _run("summary", logdir)
    assert status == 0
    assert "run fine: no problems found" in text
    assert "run sick: 4 findings" in text
    assert "exploding_gradients (gradients/norm): gradient norm of last.weight exploded" in text
    assert "dead_units (activations/zero_fraction): 97.0% of the outputs of relu1" in text
    assert "NaN/Inf in the gradients from step 50 (first: head.bias)" in text
    assert "checked: nonfinite, loss_divergence" in text
    assert _run("summary", logdir, "--strict")[0] == 1


def test_strict_passes_on_a_healthy_run(tmp_path):
    from torch_visualization import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "ok"))
    writer.add_gradient_bars("gradients/norm", {"a": 0.1, "b": 0.05}, 0)
    writer.close()
    status, text = _run("summary", str(tmp_path), "--strict")
    assert status == 0
    assert "run ok: no problems found" in text


def test_help_is_complete():
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["summary"].format_help()
    flowing = " ".join(help_text.split())  # argparse wraps lines where it likes
    assert "Checked: %s." % ", ".join(findings.KINDS) in flowing
    assert "attention_collapse, activation_outliers" in flowing
    assert "--entropy" in help_text and "--outlier" in help_text
    assert "exit status: 0; 1 with --strict" in help_text
    assert not help_text.rstrip().endswith(":")


def test_module_entry_point_runs_as_a_program(logdir):
    result = subprocess.run(
        [sys.executable, "-m", "torch_visualization", "summary", logdir, "--strict"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "gradient norm of last.weight exploded" in result.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "torch_visualization", "summary", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert helped.returncode == 0 and "exit status" in helped.stdout


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
