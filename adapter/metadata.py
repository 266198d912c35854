"""The summary contract shared by the writer and the TensorBoard plugin.

Everything here is torch-free: the plugin imports it inside TensorBoard.
Each value we write carries `SummaryMetadata` whose `plugin_data.content` is a
serialized `PluginData` (see plugin_data.proto) and whose `data_class` is
`DATA_CLASS_TENSOR`; without that data class neither of TensorBoard's loaders
keeps the data.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import message as _message
from tensorboard.compat.proto import summary_pb2

from torch_visualization import plugin_data_pb2

PLUGIN_NAME = "torch_visualization"

# Bump when PluginData changes meaning; readers skip newer content.
# 2: the ATTENTION kind and float16 heatmap steps (PluginData.encoding).
PROTO_VERSION = 2

PluginData = plugin_data_pb2.PluginData

KIND_NAMES = {
    PluginData.HEATMAP: "heatmap",
    PluginData.PIE: "pie",
    PluginData.BARS: "bars",
    PluginData.SCATTER: "scatter",
    PluginData.CONFUSION: "confusion",
    PluginData.ATTENTION: "attention",
}
KINDS_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}

# Scatter tensors carry x, y and the class index of each point.
SCATTER_COLUMNS = 3
SCATTER_NO_CLASS = -1


class ContentError(ValueError):
    """Plugin content that this version cannot read (damaged or newer)."""


def create_summary_metadata(
    kind,
    *,
    labels=(),
    original_shape=(),
    reduction="",
    stat_names=(),
    description="",
):
    """Builds the `SummaryMetadata` for one of our values.

    Args:
      kind: One of "heatmap", "pie", "bars", "scatter", "confusion".
      labels: Class names (pie, scatter, confusion) or layer names (bars).
      original_shape: Heatmap only: the shape before flattening/reduction.
      reduction: Heatmap only: "none" or "mean_pool".
      stat_names: Bars only: names of the stat columns of a 2-D tensor.
      description: Shown by TensorBoard's generic tag listings.

    Returns:
      A `summary_pb2.SummaryMetadata`.
    """
    if kind not in KINDS_BY_NAME:
        raise ValueError(
            "unknown chart kind %r; expected one of %s"
            % (kind, ", ".join(sorted(KINDS_BY_NAME)))
        )
    content = PluginData(
        version=PROTO_VERSION,
        kind=KINDS_BY_NAME[kind],
        labels=list(labels),
        original_shape=[int(d) for d in original_shape],
        reduction=reduction,
        stat_names=list(stat_names),
    )
    return summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content.SerializeToString()
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def parse_plugin_data(content):
    """Parses `plugin_data.content` written by any version of the writer.

    Args:
      content: The raw bytes.

    Returns:
      A `PluginData` message with a known kind.

    Raises:
      ContentError: the bytes do not parse, come from a newer writer, or name
        no chart kind this version knows.
    """
    if not isinstance(content, bytes):
        raise TypeError("plugin content must be bytes, got %s" % type(content).__name__)
    try:
        data = PluginData.FromString(content)
    except _message.DecodeError as e:
        raise ContentError("unparseable plugin content: %s" % e) from None
    if data.version > PROTO_VERSION:
        raise ContentError(
            "plugin content version %d is newer than this reader (%d); "
            "upgrade torch-visualization" % (data.version, PROTO_VERSION)
        )
    if data.kind not in KIND_NAMES:
        raise ContentError("plugin content names no known chart kind (%d)" % data.kind)
    return data


def kind_name(data):
    """The chart kind of parsed `PluginData` as a string ("heatmap", ...)."""
    return KIND_NAMES[data.kind]


def check_values(data, values):
    """Checks that a stored tensor has the shape its metadata promises.

    Args:
      data: Parsed `PluginData` of the tag.
      values: The numpy array read back from the event file.

    Raises:
      ContentError: the tensor disagrees with the metadata (a damaged log
        or a writer bug); the caller skips the record.
    """
    kind = kind_name(data)
    shape = values.shape
    labels = len(data.labels)
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ContentError("%s tensor has non-numeric dtype %s" % (kind, values.dtype))
    if kind == "heatmap":
        ok = values.ndim == 2
    elif kind == "pie":
        ok = values.ndim == 1 and (not labels or shape[0] == labels)
    elif kind == "bars":
        ok = values.ndim in (1, 2) and (not labels or shape[0] == labels)
        if ok and values.ndim == 2:
            ok = len(data.stat_names) in (0, shape[1])
    elif kind == "confusion":
        ok = values.ndim == 2 and shape[0] == shape[1] and (not labels or shape[0] == labels)
    elif kind == "attention":
        ok = values.ndim == 3
    else:
        ok = values.ndim == 2 and shape[1] == SCATTER_COLUMNS
    if not ok:
        raise ContentError(
            "%s tensor of shape %s disagrees with its metadata (%d labels)"
            % (kind, list(shape), labels)
        )
