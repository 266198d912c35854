"""Pure summary builders: numpy in, TensorBoard `Summary` proto out, no I/O.

Each builder validates what it is given and raises `ValueError`/`TypeError`
naming the tag. Device-side work (pooling big weights, gradient norms) happens
before these are called, in `torch_visualization.reduce`.
"""

from __future__ import annotations

import numpy as np
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.util import tensor_util

from torch_visualization import metadata


def check_numeric_dtype(tag, dtype):
    """Raises `TypeError` unless `dtype` is a real integer or floating type.

    Args:
      tag: Named in the error.
      dtype: A numpy dtype (torch dtypes are checked in the writer).
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf":
        raise TypeError(
            "%r: values must be real numbers (integer or floating), got dtype %s"
            % (tag, dtype)
        )


def _as_array(tag, values, dtype):
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as e:
        raise TypeError("%r: values are not a numeric array: %s" % (tag, e)) from None
    check_numeric_dtype(tag, array.dtype)
    if array.size == 0:
        raise ValueError("%r: values are empty (shape %s)" % (tag, list(array.shape)))
    return array.astype(dtype, copy=False)


def _check_labels(tag, labels, count, what):
    labels = [] if labels is None else list(labels)
    for label in labels:
        if not isinstance(label, str):
            raise TypeError(
                "%r: %s must be strings, got %s" % (tag, what, type(label).__name__)
            )
    if labels and len(labels) != count:
        raise ValueError(
            "%r: %d %s given for %d values" % (tag, len(labels), what, count)
        )
    return labels


def tensor_proto(array):
    """A `TensorProto` of a numpy array, float16 as raw bytes.

    `tensor_util.make_tensor_proto` writes float16 into `half_val`, one
    varint per element (a 64x64 heatmap step: 10.5 KB instead of 8.3 KB);
    `tensor_content` holds the little-endian bytes that every reader's
    `tensor_util.make_ndarray` takes first.

    Args:
      array: A numpy array.

    Returns:
      A `tensor_pb2.TensorProto`.
    """
    if array.dtype != np.float16:
        return tensor_util.make_tensor_proto(array)
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_HALF,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
        ),
        tensor_content=array.astype("<f2", copy=False).tobytes(),
    )


def _summary(tag, array, summary_metadata):
    if not isinstance(tag, str) or not tag:
        raise TypeError("tag must be a non-empty string, got %r" % (tag,))
    return summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(
                tag=tag,
                tensor=tensor_proto(array),
                metadata=summary_metadata,
            )
        ]
    )


def heatmap_summary(tag, grid, *, original_shape, reduction="none"):
    """A heatmap value: a 2-D grid of (possibly pooled) tensor values.

    Args:
      tag: The tag.
      grid: Array-like `[rows, cols]`, already reduced to a bounded grid.
      original_shape: The shape of the tensor the grid was made from.
      reduction: "none" when `grid` is the tensor itself (up to reshaping),
        "mean_pool" when cells are means over blocks of the original.

    Returns:
      A `Summary` proto holding one tensor: float16 `[rows + 1, cols]` when
      the values fit, else float32 `[rows, cols]`
      (`metadata.encode_heatmap_grid`).
    """
    grid = _as_array(tag, grid, np.float32)
    if grid.ndim != 2:
        raise ValueError(
            "%r: heatmap grid must be 2-D, got shape %s" % (tag, list(grid.shape))
        )
    if reduction not in ("none", "mean_pool"):
        raise ValueError("%r: unknown reduction %r" % (tag, reduction))
    return _summary(
        tag,
        metadata.encode_heatmap_grid(grid),
        metadata.create_summary_metadata(
            "heatmap",
            original_shape=original_shape,
            reduction=reduction,
            encoding=metadata.PluginData.FLOAT16_RANGE_ROW,
        ),
    )


def pie_summary(tag, values, *, class_names=None):
    """A pie value: one non-negative share per class.

    NaN and +/-Inf are kept (and drawn as such) since they signal a numerical
    failure the user wants to see; finite negative values are an error.

    Args:
      tag: The tag.
      values: Array-like `[classes]` of counts, probabilities or any weights.
      class_names: Optional names, one per class.

    Returns:
      A `Summary` proto holding one float64 tensor.
    """
    values = _as_array(tag, values, np.float64)
    if values.ndim != 1:
        raise ValueError(
            "%r: pie values must be 1-D [classes], got shape %s"
            % (tag, list(values.shape))
        )
    finite = values[np.isfinite(values)]
    if (finite < 0).any():
        raise ValueError(
            "%r: pie values must be non-negative, got %s" % (tag, finite[finite < 0][:5].tolist())
        )
    names = _check_labels(tag, class_names, values.shape[0], "class_names")
    return _summary(
        tag, values, metadata.create_summary_metadata("pie", labels=names)
    )


def bars_summary(tag, values, *, labels=None, stat_names=None):
    """A bars value: one bar per layer, optionally several stats per layer.

    Args:
      tag: The tag.
      values: Array-like `[layers]`, or `[layers, stats]` where the first
        stat is drawn and the rest are shown on hover.
      labels: Optional layer names, one per layer.
      stat_names: For 2-D values, one name per stat column.

    Returns:
      A `Summary` proto holding one float64 tensor.
    """
    values = _as_array(tag, values, np.float64)
    if values.ndim not in (1, 2):
        raise ValueError(
            "%r: bar values must be [layers] or [layers, stats], got shape %s"
            % (tag, list(values.shape))
        )
    names = _check_labels(tag, labels, values.shape[0], "labels")
    stats = [] if stat_names is None else list(stat_names)
    if stats and (values.ndim != 2 or len(stats) != values.shape[1]):
        raise ValueError(
            "%r: %d stat_names given for values of shape %s"
            % (tag, len(stats), list(values.shape))
        )
    return _summary(
        tag,
        values,
        metadata.create_summary_metadata("bars", labels=names, stat_names=stats),
    )


def scatter_summary(tag, points, *, classes=None, class_names=None):
    """A scatter value: 2-D points, each optionally in a class.

    Args:
      tag: The tag.
      points: Array-like `[points, 2]`.
      classes: Optional integer class index per point, `[points]`, each in
        `[0, len(class_names))` when names are given, else non-negative.
      class_names: Optional class names.

    Returns:
      A `Summary` proto holding a float32 tensor `[points, 3]`: x, y and the
      class index (-1 for points without a class).
    """
    points = _as_array(tag, points, np.float32)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(
            "%r: scatter points must be [N, 2], got shape %s"
            % (tag, list(points.shape))
        )
    count = points.shape[0]
    names = [] if class_names is None else list(class_names)
    _check_labels(tag, names, len(names), "class_names")
    if classes is None:
        index = np.full(count, metadata.SCATTER_NO_CLASS, dtype=np.float32)
    else:
        index = np.asarray(classes)
        if index.dtype.kind not in "iu":
            raise TypeError(
                "%r: scatter labels must be integer class indices, got dtype %s"
                % (tag, index.dtype)
            )
        if index.shape != (count,):
            raise ValueError(
                "%r: %s labels given for %d points"
                % (tag, list(index.shape), count)
            )
        limit = len(names) if names else None
        bad = (index < 0) if limit is None else ((index < 0) | (index >= limit))
        if bad.any():
            raise ValueError(
                "%r: labels out of range%s: %s"
                % (
                    tag,
                    "" if limit is None else " [0, %d)" % limit,
                    index[bad][:5].tolist(),
                )
            )
        index = index.astype(np.float32)
    table = np.concatenate([points, index[:, None]], axis=1)
    return _summary(
        tag, table, metadata.create_summary_metadata("scatter", labels=names)
    )


def confusion_summary(tag, counts, *, class_names=None):
    """A confusion matrix value: counts of (true class, predicted class).

    Args:
      tag: The tag.
      counts: Array-like `[classes, classes]` of non-negative counts; rows are
        true classes, columns predicted classes.
      class_names: Optional names, one per class.

    Returns:
      A `Summary` proto holding one float64 tensor.
    """
    counts = _as_array(tag, counts, np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(
            "%r: a confusion matrix must be square [classes, classes], got shape %s"
            % (tag, list(counts.shape))
        )
    if (counts[np.isfinite(counts)] < 0).any():
        raise ValueError("%r: confusion counts must be non-negative" % tag)
    names = _check_labels(tag, class_names, counts.shape[0], "class_names")
    return _summary(
        tag, counts, metadata.create_summary_metadata("confusion", labels=names)
    )


def attention_summary(tag, weights, *, original_shape, reduction="none", tokens=None):
    """An attention value: per-head attention weights of one example.

    Weights are kept as given (NaN and +/-Inf included: they mark a
    numerical failure the user wants to see); rows need not sum to one
    exactly, since pooling and masking change that.

    Args:
      tag: The tag.
      weights: Array-like `[heads, queries, keys]`, each side already pooled
        to a bounded number of positions (at most 64 in `watch()`).
      original_shape: `[heads, queries, keys]` before pooling.
      reduction: "none" when `weights` are the maps themselves, "mean_pool"
        when positions were averaged in blocks.
      tokens: Optional label of each position, for unpooled self-attention
        (queries == keys): one string per position.

    Returns:
      A `Summary` proto holding one float32 tensor.
    """
    weights = _as_array(tag, weights, np.float32)
    if weights.ndim != 3:
        raise ValueError(
            "%r: attention weights must be 3-D [heads, queries, keys], got shape %s"
            % (tag, list(weights.shape))
        )
    if reduction not in ("none", "mean_pool"):
        raise ValueError("%r: unknown reduction %r" % (tag, reduction))
    try:
        original = [int(d) for d in original_shape]
    except (TypeError, ValueError):
        raise TypeError(
            "%r: original_shape must be a sequence of 3 integers, got %r" % (tag, original_shape)
        ) from None
    if len(original) != 3 or min(original) <= 0:
        raise ValueError(
            "%r: original_shape must be 3 positive sizes [heads, queries, keys], got %s"
            % (tag, original)
        )
    shape = list(weights.shape)
    if original[0] != shape[0] or original[1] < shape[1] or original[2] < shape[2]:
        raise ValueError(
            "%r: weights of shape %s cannot come from original_shape %s (same heads, "
            "no more positions than before pooling)" % (tag, shape, original)
        )
    if reduction == "none" and original != shape:
        raise ValueError(
            "%r: reduction 'none' but the weights' shape %s differs from original_shape %s"
            % (tag, shape, original)
        )
    names = [] if tokens is None else list(tokens)
    if names:
        if reduction != "none":
            raise ValueError(
                "%r: tokens label unpooled positions, but the weights were %s" % (tag, reduction)
            )
        if shape[1] != shape[2]:
            raise ValueError(
                "%r: tokens label self-attention positions; queries (%d) and keys (%d) differ"
                % (tag, shape[1], shape[2])
            )
    names = _check_labels(tag, names, shape[2], "tokens")
    return _summary(
        tag,
        weights,
        metadata.create_summary_metadata(
            "attention", labels=names, original_shape=original, reduction=reduction
        ),
    )


def tokens_summary(tag, tokens):
    """A tokens value: the text of each input position of one example.

    Unlike labels (frozen per tag in the metadata), tokens live in the
    tensor, so they may change at every step (a training batch's tokens do).

    Args:
      tag: The tag (`watch()` writes `metadata.TOKENS_TAG`).
      tokens: A non-empty sequence of strings, one per position.

    Returns:
      A `Summary` proto holding one 1-D string tensor (UTF-8).

    Raises:
      TypeError: `tokens` is a string or holds a non-string.
      ValueError: no tokens.
    """
    if not isinstance(tag, str) or not tag:
        raise TypeError("tag must be a non-empty string, got %r" % (tag,))
    if isinstance(tokens, (str, bytes)):
        raise TypeError("%r: tokens must be a sequence of strings, not one string" % tag)
    try:
        texts = list(tokens)
    except TypeError:
        raise TypeError("%r: tokens must be a sequence of strings, got %s"
                        % (tag, type(tokens).__name__)) from None
    for text in texts:
        if not isinstance(text, str):
            raise TypeError("%r: tokens must be strings, got %s" % (tag, type(text).__name__))
    if not texts:
        raise ValueError("%r: tokens are empty" % tag)
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(texts))]
        ),
        string_val=[text.encode("utf-8") for text in texts],
    )
    return summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(
                tag=tag, tensor=proto, metadata=metadata.create_summary_metadata("tokens")
            )
        ]
    )
