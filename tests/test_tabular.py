"""Long-format rows shared by the CSV export and to_dataframe()."""

import math

import numpy as np

from torch_visualization import tabular


def test_bars_with_stats_name_every_column():
    rows = tabular.long_rows("bars", ["a", "b"], ["norm", "nonfinite"], np.array([[1.0, 0], [2, 3]]))
    assert list(zip(*rows)) == [
        (0, "a", "norm", 1.0), (0, "a", "nonfinite", 0.0),
        (1, "b", "norm", 2.0), (1, "b", "nonfinite", 3.0),
    ]


def test_scatter_has_two_rows_per_point_and_class_names():
    rows = tabular.long_rows("scatter", ["cat"], [], np.array([[1.0, 2, 0], [3, 4, -1]], dtype=np.float32))
    assert list(zip(*rows)) == [(0, "cat", "x", 1.0), (0, "cat", "y", 2.0), (1, "", "x", 3.0), (1, "", "y", 4.0)]


def test_heatmap_cells_and_missing_labels():
    index, label, stat, value = tabular.long_rows("heatmap", [], [], np.array([[1.0, math.nan], [3, 4]]))
    assert (index, label, stat) == ([0, 1, 2, 3], ["0,0", "0,1", "1,0", "1,1"], ["value"] * 4)
    assert math.isnan(value[1])
    assert list(zip(*tabular.long_rows("pie", [], [], np.array([5.0, 6.0])))) == [(0, "0", "value", 5.0), (1, "1", "value", 6.0)]


def test_confusion_names_true_and_predicted_class():
    rows = tabular.long_rows("confusion", ["x", "y"], [], np.array([[1.0, 2], [3, 4]]))
    assert list(zip(*rows)) == [
        (0, "x", "predicted:x", 1.0), (0, "x", "predicted:y", 2.0),
        (1, "y", "predicted:x", 3.0), (1, "y", "predicted:y", 4.0),
    ]


def test_attention_rows_name_head_query_and_key():
    values = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    index, label, stat, value = tabular.long_rows("attention", [], [], values)
    assert len(index) == 24 and set(stat) == {"value"}
    # Row 17 = head 1, query 1, key 1 (17 = 1*12 + 1*4 + 1).
    assert (index[17], label[17], value[17]) == (17, "h1,1,1", 17.0)
