"""Notebook use: the read API as numpy and as a long-format pandas DataFrame."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import CLASS_NAMES
from torch_visualization.reader import DATAFRAME_COLUMNS, read, to_dataframe

pd = pytest.importorskip("pandas", reason="pandas (test extra) is needed for to_dataframe")


def test_every_chart_kind_in_long_format(sample_logdir):
    logdir, expected = sample_logdir
    frame = to_dataframe(logdir)
    assert tuple(frame.columns) == DATAFRAME_COLUMNS
    assert set(frame["run"]) == set(expected)
    assert set(frame["kind"]) == {"heatmap", "pie", "bars", "scatter", "confusion"}

    # Row counts: one per number (scatter: x and y per point).
    rows = frame.groupby(["run", "tag"]).size()
    for run, by_tag in expected.items():
        for tag, by_step in by_tag.items():
            numbers = sum(values.size for values in by_step.values())
            if tag == "features/pca":
                numbers = numbers // 3 * 2  # the class column is a label, not a row
            assert rows[run, tag] == numbers, (run, tag)

    pie = frame[(frame.run == "alpha") & (frame.tag == "outputs/classes") & (frame.step == 7)]
    assert pie["label"].tolist() == ["cat", "dog", "bird"]
    assert pie["value"].tolist() == expected["alpha"]["outputs/classes"][7].tolist()
    assert pie["index"].tolist() == [0, 1, 2]

    bars = frame[(frame.run == "beta") & (frame.tag == "gradients/norm") & (frame.step == 10)]
    assert bars["label"].tolist() == ["0.weight", "0.bias", "1.weight", "1.bias"]
    np.testing.assert_allclose(bars["value"], expected["beta"]["gradients/norm"][10], rtol=1e-6)

    heat = frame[(frame.run == "alpha") & (frame.tag == "weights/w") & (frame.step == 20)]
    grid = expected["alpha"]["weights/w"][20]
    assert heat["label"].iloc[grid.shape[1] + 1] == "1,1"
    np.testing.assert_array_equal(heat["value"].to_numpy(), grid.astype(np.float64).ravel())
    # NaN and +-Inf are kept, not dropped.
    assert heat["value"].isna().sum() == 1
    assert (heat["value"] == math.inf).sum() == 1 and (heat["value"] == -math.inf).sum() == 1

    scatter = frame[(frame.run == "alpha") & (frame.tag == "features/pca") & (frame.step == 0)]
    points = scatter.pivot(index="index", columns="stat", values="value")
    want = expected["alpha"]["features/pca"][0]
    np.testing.assert_allclose(points[["x", "y"]].to_numpy(), want[:, :2], rtol=1e-6)
    names = scatter.drop_duplicates("index")["label"].tolist()
    assert names == ["cat", "dog", "bird", "cat", "dog", "bird"]

    confusion = frame[(frame.run == "alpha") & (frame.tag == "eval/confusion") & (frame.step == 0)]
    matrix = confusion.pivot(index="label", columns="stat", values="value")
    counts = expected["alpha"]["eval/confusion"][0]
    for i, true in enumerate(CLASS_NAMES):
        for j, predicted in enumerate(CLASS_NAMES):
            assert matrix.loc[true, "predicted:" + predicted] == counts[i, j]


def test_kinds_filter_and_read_result_as_source(sample_logdir):
    logdir, _ = sample_logdir
    data = read(logdir)
    frame = to_dataframe(data, kinds="pie")
    assert set(frame["kind"]) == {"pie"}
    assert frame.equals(to_dataframe(logdir, kinds=["pie"]))
    assert frame["step"].dtype == np.int64 and frame["value"].dtype == np.float64


def test_bars_with_stat_columns(tmp_path):
    from torch_visualization import summary
    from torch_visualization.writer import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run"))
    proto = summary.bars_summary(
        "gradients/stats",
        np.array([[1.0, 2.0], [3.0, 4.0]]),
        labels=["a", "b"],
        stat_names=["norm", "max_abs"],
    )
    writer._get_file_writer().add_summary(proto, 3)
    writer.close()
    frame = to_dataframe(str(tmp_path))
    assert frame[["label", "stat", "value"]].values.tolist() == [
        ["a", "norm", 1.0], ["a", "max_abs", 2.0], ["b", "norm", 3.0], ["b", "max_abs", 4.0],
    ]


def test_empty_logdir_gives_the_columns(tmp_path):
    frame = to_dataframe(str(tmp_path))
    assert frame.empty and tuple(frame.columns) == DATAFRAME_COLUMNS


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown chart kind"):
        to_dataframe({}, kinds=["histogram"])
    with pytest.raises(TypeError, match="logdir path or the mapping"):
        to_dataframe(42)


def test_without_pandas_the_error_says_how_to_get_it(tmp_path):
    # A fresh interpreter where pandas cannot be imported.
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "from torch_visualization.reader import to_dataframe\n"
        "try:\n"
        "    to_dataframe(%r)\n"
        "except ImportError as e:\n"
        "    print(e)\n" % str(tmp_path)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install pandas" in out.stdout, out.stderr
