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

try:  # C float16 encoding (adapter/_fused.c, torch-free); numpy where not built
    from torch_visualization import _fused
except ImportError:
    _fused = None

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
    PluginData.TOKENS: "tokens",
}
KINDS_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}

# The tokens of a logging step's first example (kind "tokens", a 1-D string
# tensor per step): watch() writes them beside the attention maps, and the
# plugin serves them with each attention step.
TOKENS_TAG = "attention/tokens"

# Scatter tensors carry x, y and the class index of each point.
SCATTER_COLUMNS = 3
SCATTER_NO_CLASS = -1

# Heatmap steps stored as float16 (PluginData.FLOAT16_RANGE_ROW; the layout is
# in plugin_data.proto). The float16 cells hold cell * 2**k, k chosen so the
# largest finite |cell| lands in [2**14, 2**15): a power of two is exact both
# ways and lets weight-sized values (1e-3 with cells near 0) keep float16's
# full precision, which unscaled float16 loses below 2**-14.
_F16_TOP = 15
# Scaled nonzero cells must be float16 normals: relative error <= 2**-11.
_F16_MIN_NORMAL_EXPONENT = -14
# Decoded cells must be float32 normals too (a float32 subnormal input has
# fewer bits than float16 would promise).
_F32_MIN_NORMAL_EXPONENT = -126
# The range row's first entries: min low, min high, max low, max high.
_RANGE_ENTRIES = 4
# Narrower grids stay float32 (no room for the range row).
FLOAT16_MIN_COLUMNS = _RANGE_ENTRIES


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
    encoding=PluginData.FLOAT32,
):
    """Builds the `SummaryMetadata` for one of our values.

    Args:
      kind: One of "heatmap", "pie", "bars", "scatter", "confusion",
        "attention", "tokens".
      labels: Class names (pie, scatter, confusion) or layer names (bars).
      original_shape: Heatmap only: the shape before flattening/reduction.
      reduction: Heatmap only: "none" or "mean_pool".
      stat_names: Bars only: names of the stat columns of a 2-D tensor.
      description: Shown by TensorBoard's generic tag listings.
      encoding: Heatmap only: `PluginData.FLOAT32` (every step float32) or
        `PluginData.FLOAT16_RANGE_ROW` (steps as `encode_heatmap_grid`
        returns them); the enum value or its name.

    Returns:
      A `summary_pb2.SummaryMetadata`.
    """
    if kind not in KINDS_BY_NAME:
        raise ValueError(
            "unknown chart kind %r; expected one of %s"
            % (kind, ", ".join(sorted(KINDS_BY_NAME)))
        )
    names = PluginData.Encoding.keys()
    if isinstance(encoding, str) and encoding in names:
        encoding = PluginData.Encoding.Value(encoding)
    if isinstance(encoding, bool) or encoding not in PluginData.Encoding.values():
        raise ValueError(
            "unknown heatmap encoding %r; expected one of %s" % (encoding, ", ".join(names))
        )
    if encoding != PluginData.FLOAT32 and kind != "heatmap":
        raise ValueError("encoding %s is for heatmaps, not %s" % (PluginData.Encoding.Name(encoding), kind))
    content = PluginData(
        version=PROTO_VERSION,
        kind=KINDS_BY_NAME[kind],
        labels=list(labels),
        original_shape=[int(d) for d in original_shape],
        reduction=reduction,
        stat_names=list(stat_names),
        encoding=encoding,
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
      values: The numpy array read back from the event file (a heatmap
        step stored as float16 is `[rows + 1, cols]`, see
        `encode_heatmap_grid`).

    Raises:
      ContentError: the tensor disagrees with the metadata (a damaged log
        or a writer bug); the caller skips the record.
    """
    kind = kind_name(data)
    shape = values.shape
    labels = len(data.labels)
    if kind == "tokens":
        # make_ndarray gives DT_STRING tensors as an object array of bytes.
        if values.ndim != 1 or values.dtype.kind not in "OSU":
            raise ContentError("tokens tensor of shape %s and dtype %s is not 1-D strings"
                               % (list(shape), values.dtype))
        return
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ContentError("%s tensor has non-numeric dtype %s" % (kind, values.dtype))
    if kind == "heatmap":
        ok = values.ndim == 2
        if ok and values.dtype == np.float16:
            _check_float16_heatmap(values)
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


def decode_token_values(values):
    """The strings of one stored tokens step (`check_values` passed).

    Args:
      values: The 1-D array `tensor_util.make_ndarray` gives (bytes).

    Returns:
      A list of str, UTF-8 decoded with errors="replace" (a damaged or
      foreign log never stops a reader).
    """
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
            for v in np.asarray(values).tolist()]


def _scale_exponent(max_abs):
    """k such that `max_abs * 2**k` lies in [2**14, 2**15); 0 for 0 or NaN."""
    if not max_abs > 0:
        return 0
    # frexp: max_abs = f * 2**e with 0.5 <= f < 1, exactly.
    return _F16_TOP - int(np.frexp(max_abs)[1])


def _finite_range(grid):
    """`(min, max)` of the finite cells as Python floats, or None."""
    finite = np.isfinite(grid)
    if finite.all():
        return float(grid.min()), float(grid.max())
    if not finite.any():
        return None
    cells = grid[finite]
    return float(cells.min()), float(cells.max())


def encode_heatmap_grid(grid):
    """The array to store for one heatmap step: float16 where the values fit.

    The float16 form (`PluginData.FLOAT16_RANGE_ROW`, see plugin_data.proto)
    is `[rows + 1, cols]`: the cells times a power of two, then a row holding
    the exact float32 min and max of the finite cells. It is used when every
    finite nonzero cell, so scaled, is a float16 normal number (each cell
    then keeps float16's relative precision, 2**-11, about 3 significant
    digits): the finite cells span less than about 2**28 (nonzero |x| at
    least max|x| * 2**-29) and are float32 normals. NaN and +/-Inf are kept
    exactly. Otherwise, and for grids of fewer than 4 columns (no room for the
    range row; such grids are tiny anyway), the float32 grid is returned.

    Args:
      grid: Array-like `[rows, cols]` of real numbers (stored as float32).

    Returns:
      A float16 `[rows + 1, cols]` or a float32 `[rows, cols]` array; decode
      either with `decode_heatmap_values`.

    Raises:
      TypeError: not real numbers.
      ValueError: not 2-D.
    """
    grid = np.asarray(grid)
    if grid.dtype.kind not in "iuf":
        raise TypeError("heatmap grid must be real numbers, got dtype %s" % grid.dtype)
    if grid.ndim != 2:
        raise ValueError("heatmap grid must be 2-D, got shape %s" % list(grid.shape))
    return encode_float32_grid(np.ascontiguousarray(grid, dtype=np.float32))


def encode_float32_grid(grid):
    """`encode_heatmap_grid` of a grid the caller knows is a C-contiguous
    2-D float32 array (watch's decoding: the checks cost more than a small
    grid's encoding)."""
    rows, cols = grid.shape
    if cols < _RANGE_ENTRIES or rows == 0:
        return grid
    if _fused is not None:
        # The same encoding in C (adapter/_fused.c): two passes, no temporaries,
        # the GIL released (this runs beside training on the writer thread).
        encoded = np.empty((rows + 1, cols), dtype=np.float16)
        return encoded if _fused.encode_heatmap(grid, rows, encoded) else grid
    return _encode_heatmap_numpy(grid)


def _encode_heatmap_numpy(grid):
    """`encode_heatmap_grid` of a float32 `[rows, cols]` grid (cols >= 4)
    with numpy alone (where `_fused` was not built)."""
    rows, cols = grid.shape
    # This runs on the writer thread for every heatmap of every logging step
    # (beside training, on the same cores): few passes over the grid. min and
    # max propagate NaN/Inf, so finite ones mean every cell is finite.
    low, high = grid.min(), grid.max()
    value_range = (float(low), float(high)) if np.isfinite(low) and np.isfinite(high) \
        else _finite_range(grid)
    if value_range is None:
        vmin = vmax = np.float32(np.nan)
        k = 0
    else:
        vmin, vmax = np.float32(value_range[0]), np.float32(value_range[1])
        k = _scale_exponent(max(-vmin, vmax))
        # The smallest magnitude a nonzero cell may have; NaN compares False.
        floor = 2.0 ** max(_F16_MIN_NORMAL_EXPONENT - k, _F32_MIN_NORMAL_EXPONENT)
        magnitude = np.abs(grid)
        # Usually no cell is that small (nor zero): one min settles it.
        if magnitude.min() < floor and ((magnitude < floor) & (magnitude != 0)).any():
            return grid
    encoded = np.empty((rows + 1, cols), dtype=np.float16)
    # Times 2**k (exact, whatever k), rounded into float16 in one pass.
    np.ldexp(grid, k, out=encoded[:rows], casting="unsafe")
    encoded[rows] = 0
    # Little-endian float32 bytes read as little-endian 16-bit halves give
    # min low, min high, max low, max high on any host.
    halves = np.array([vmin, vmax], dtype="<f4").view("<u2").astype(np.uint16)
    encoded[rows, :_RANGE_ENTRIES] = halves.view(np.float16)
    return encoded


def _check_float16_heatmap(values):
    """Raises ContentError unless `values` has the float16 heatmap layout."""
    rows, cols = values.shape
    if rows < 2 or cols < _RANGE_ENTRIES:
        raise ContentError(
            "float16 heatmap tensor of shape %s has no room for its range row "
            "(needs at least 2 rows and %d columns)" % ([rows, cols], _RANGE_ENTRIES)
        )
    if np.ascontiguousarray(values[-1, _RANGE_ENTRIES:]).view(np.uint16).any():
        raise ContentError("float16 heatmap range row has nonzero reserved entries")


def decode_heatmap_values(values):
    """The grid of one stored heatmap step, and its exact range.

    Args:
      values: The array read back from the event file: float32 `[rows, cols]`
        (every log before version 2, and grids that did not fit float16) or
        float16 `[rows + 1, cols]` as `encode_heatmap_grid` made it.

    Returns:
      `(grid, value_range)`: `grid` is float32 `[rows, cols]` for float16
      steps (other arrays are returned as they are), NaN/+-Inf in place;
      `value_range` is `(min, max)` of the finite cells as exact Python
      floats (from the range row for float16 steps), or None when no cell is
      finite.

    Raises:
      ContentError: a float16 array without a valid range row.
    """
    values = np.asarray(values)
    if values.dtype != np.float16:
        return values, _finite_range(values)
    if values.ndim != 2:
        raise ContentError("float16 heatmap tensor must be 2-D, got shape %s" % list(values.shape))
    _check_float16_heatmap(values)
    halves = np.ascontiguousarray(values[-1, :_RANGE_ENTRIES]).view(np.uint16)
    vmin, vmax = halves.astype("<u2").view("<f4").astype(np.float32)
    if np.isnan(vmin) and np.isnan(vmax):
        value_range, k = None, 0
    elif not (np.isfinite(vmin) and np.isfinite(vmax) and vmin <= vmax):
        raise ContentError("float16 heatmap range row holds no valid range (%r, %r)" % (vmin, vmax))
    else:
        value_range = (float(vmin), float(vmax))
        k = _scale_exponent(max(-vmin, vmax))
    grid = values[:-1].astype(np.float32)
    return (np.ldexp(grid, -k) if k else grid), value_range
