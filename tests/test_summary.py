"""Pure summary builders: exact proto fields and input validation."""

import numpy as np
import pytest
from tensorboard.compat.proto import summary_pb2, types_pb2
from tensorboard.util import tensor_util

from torch_visualization import metadata, summary


def only_value(proto):
    assert isinstance(proto, summary_pb2.Summary)
    assert len(proto.value) == 1
    return proto.value[0]


def plugin_data(value):
    assert value.metadata.plugin_data.plugin_name == "torch_visualization"
    assert value.metadata.data_class == summary_pb2.DATA_CLASS_TENSOR
    return metadata.parse_plugin_data(value.metadata.plugin_data.content)


def test_heatmap_fields():
    value = only_value(
        summary.heatmap_summary("w", [[1, 2], [3, 4]], original_shape=(8, 2, 1), reduction="mean_pool")
    )
    assert value.tag == "w"
    assert value.tensor.dtype == types_pb2.DT_FLOAT
    np.testing.assert_array_equal(tensor_util.make_ndarray(value.tensor), [[1, 2], [3, 4]])
    data = plugin_data(value)
    assert data.version == metadata.PROTO_VERSION
    assert data.kind == metadata.PluginData.HEATMAP
    assert list(data.original_shape) == [8, 2, 1]
    assert data.reduction == "mean_pool"
    assert list(data.labels) == []


def test_pie_fields_keep_non_finite():
    value = only_value(
        summary.pie_summary("p", [1, np.nan, np.inf, 0], class_names=["a", "b", "c", "d"])
    )
    assert value.tensor.dtype == types_pb2.DT_DOUBLE
    stored = tensor_util.make_ndarray(value.tensor)
    assert stored[0] == 1 and np.isnan(stored[1]) and stored[2] == np.inf and stored[3] == 0
    data = plugin_data(value)
    assert data.kind == metadata.PluginData.PIE
    assert list(data.labels) == ["a", "b", "c", "d"]


def test_bars_with_stats():
    value = only_value(
        summary.bars_summary("b", [[1, 0], [2, 3]], labels=["l1", "l2"], stat_names=["norm", "nonfinite"])
    )
    data = plugin_data(value)
    assert data.kind == metadata.PluginData.BARS
    assert list(data.labels) == ["l1", "l2"]
    assert list(data.stat_names) == ["norm", "nonfinite"]
    assert tensor_util.make_ndarray(value.tensor).shape == (2, 2)


def test_scatter_table_has_class_column():
    value = only_value(
        summary.scatter_summary("s", [[0, 1], [2, 3]], classes=np.array([1, 0]), class_names=["x", "y"])
    )
    np.testing.assert_array_equal(tensor_util.make_ndarray(value.tensor), [[0, 1, 1], [2, 3, 0]])
    unlabelled = only_value(summary.scatter_summary("s", [[0, 1]]))
    np.testing.assert_array_equal(tensor_util.make_ndarray(unlabelled.tensor), [[0, 1, -1]])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: summary.heatmap_summary("t", [], original_shape=(0,)), ValueError, "'t': values are empty"),
        (lambda: summary.heatmap_summary("t", [1, 2], original_shape=(2,)), ValueError, "must be 2-D"),
        (lambda: summary.heatmap_summary("t", [[1j]], original_shape=(1,)), TypeError, "complex"),
        (lambda: summary.heatmap_summary("t", [["a"]], original_shape=(1,)), TypeError, "real numbers"),
        (lambda: summary.pie_summary("t", [1, 2], class_names=["a"]), ValueError, "1 class_names given for 2 values"),
        (lambda: summary.pie_summary("t", [1, -2]), ValueError, "must be non-negative"),
        (lambda: summary.pie_summary("t", [[1, 2]]), ValueError, "must be 1-D"),
        (lambda: summary.pie_summary("t", [1], class_names=[3]), TypeError, "must be strings"),
        (lambda: summary.bars_summary("t", [1, 2], labels=["a", "b", "c"]), ValueError, "3 labels given for 2 values"),
        (lambda: summary.bars_summary("t", [1, 2], stat_names=["x"]), ValueError, "stat_names"),
        (lambda: summary.scatter_summary("t", [[1, 2, 3]]), ValueError, "must be [N, 2]"),
        (lambda: summary.scatter_summary("t", [[1, 2]], classes=np.array([2]), class_names=["a", "b"]), ValueError, "out of range [0, 2)"),
        (lambda: summary.scatter_summary("t", [[1, 2]], classes=np.array([-1])), ValueError, "out of range"),
        (lambda: summary.scatter_summary("t", [[1, 2]], classes=np.array([0.5])), TypeError, "integer class indices"),
        (lambda: summary.scatter_summary("t", [[1, 2]], classes=np.array([0, 1])), ValueError, "for 1 points"),
        (lambda: summary.pie_summary("", [1]), TypeError, "tag must be a non-empty string"),
    ],
)
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=None) as info:
        call()
    assert message in str(info.value)


def test_create_metadata_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown chart kind 'donut'"):
        metadata.create_summary_metadata("donut")


def test_parse_rejects_damaged_and_newer_content():
    with pytest.raises(metadata.ContentError, match="unparseable"):
        metadata.parse_plugin_data(b"\xff\xff\xff")
    newer = metadata.PluginData(version=metadata.PROTO_VERSION + 1, kind=metadata.PluginData.PIE)
    with pytest.raises(metadata.ContentError, match="newer"):
        metadata.parse_plugin_data(newer.SerializeToString())
    with pytest.raises(metadata.ContentError, match="no known chart kind"):
        metadata.parse_plugin_data(metadata.PluginData(version=1).SerializeToString())


def test_check_values_catches_shape_mismatch():
    pie = metadata.parse_plugin_data(
        metadata.create_summary_metadata("pie", labels=["a", "b"]).plugin_data.content
    )
    metadata.check_values(pie, np.zeros(2))
    with pytest.raises(metadata.ContentError, match="disagrees with its metadata"):
        metadata.check_values(pie, np.zeros(3))
