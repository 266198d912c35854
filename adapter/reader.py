"""Read API for notebooks and tests: our charts back as numpy arrays.

Reads through TensorBoard's own Python event loader (never by parsing files
ourselves) and keeps every step. Torch-free.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util

from torch_visualization import metadata, tabular

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Series:
    """All logged steps of one run and tag.

    Attributes:
      kind: "heatmap", "pie", "bars" or "scatter".
      labels: Class or layer names (empty when none were given).
      steps: The steps, in the order logged.
      wall_times: Seconds since the epoch, one per step.
      values: One numpy array per step (see DESIGN.md for shapes).
      original_shape: Heatmaps: the tensor's shape before reduction.
      reduction: Heatmaps: "none" or "mean_pool".
      stat_names: Bars with several stats: the stat of each column.
    """

    kind: str
    labels: list
    steps: list
    wall_times: list
    values: list
    original_shape: list = dataclasses.field(default_factory=list)
    reduction: str = ""
    stat_names: list = dataclasses.field(default_factory=list)


def read(logdir):
    """Reads every chart logged under `logdir`.

    Args:
      logdir: A directory of runs (as given to `tensorboard --logdir`).

    Returns:
      `{run: {tag: Series}}`. Records that cannot be read (damaged or from a
      newer version) are skipped with a logged warning.
    """
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        # 0 keeps every step: this is a one-shot read, not a server.
        tensor_size_guidance={metadata.PLUGIN_NAME: 0}
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    result = {}
    contents = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    for run, tag_to_content in sorted(contents.items()):
        for tag, content in sorted(tag_to_content.items()):
            try:
                data = metadata.parse_plugin_data(content)
            except metadata.ContentError as e:
                logger.warning("skipping run %r tag %r: %s", run, tag, e)
                continue
            series = Series(
                kind=metadata.kind_name(data),
                labels=list(data.labels),
                steps=[],
                wall_times=[],
                values=[],
                original_shape=list(data.original_shape),
                reduction=data.reduction,
                stat_names=list(data.stat_names),
            )
            for event in multiplexer.Tensors(run, tag):
                try:
                    values = tensor_util.make_ndarray(event.tensor_proto)
                    metadata.check_values(data, values)
                    if series.kind == "heatmap":
                        # float16 steps come back as float32 [rows, cols].
                        values = metadata.decode_heatmap_values(values)[0]
                    elif series.kind == "tokens":
                        # UTF-8 bytes -> str (one per position).
                        values = np.array(metadata.decode_token_values(values), dtype=object)
                except (ValueError, TypeError) as e:
                    logger.warning(
                        "skipping run %r tag %r step %d: %s", run, tag, event.step, e
                    )
                    continue
                series.steps.append(event.step)
                series.wall_times.append(event.wall_time)
                series.values.append(np.asarray(values))
            result.setdefault(run, {})[tag] = series
    return result


# The plugin's CSV export uses the same columns and names (tabular.py).
DATAFRAME_COLUMNS = tabular.COLUMNS


def to_dataframe(source, *, kinds=None):
    """Our charts as one long-format pandas DataFrame, one row per number.

    Columns (in this order):
      run, tag, kind, step, wall_time: where the number comes from.
      index: position of the element within its step: class (pie, and the
        true class of a confusion matrix), layer (bars), flattened cell
        `row * cols + col` (heatmap) or point (scatter).
      label: the element's name: class name (pie, confusion; the index as
        text when the tag has no names), layer name (bars), `"row,col"`
        (heatmap), the point's class name (scatter; "" without a class).
      stat: which number of the element: "value" (pie, 1-D bars, heatmap),
        the stat name of `[layers, stats]` bars, "x" / "y" (scatter: two
        rows per point, paired by `index`), "predicted:<class>" (confusion).
      value: the number (float64; NaN and +-Inf kept as they are).

    The same rows as the plugin's CSV export (`tabular.long_rows`).

    Args:
      source: A logdir (local or any scheme TensorBoard reads, e.g.
        `s3://bucket/runs`) or the `{run: {tag: Series}}` mapping `read()`
        returned.
      kinds: Optional collection of chart kinds to keep (e.g. "pie",
        "bars"); all by default.

    Returns:
      A `pandas.DataFrame` with the columns above (empty, with those columns,
      when nothing matches).

    Raises:
      ImportError: pandas is not installed (it is optional).
      ValueError: `kinds` names an unknown chart kind.
      TypeError: `source` is neither a path nor a mapping of runs.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            "to_dataframe() needs pandas, an optional dependency: pip install pandas"
        ) from None
    if kinds is not None:
        if isinstance(kinds, str):
            kinds = (kinds,)
        unknown = sorted(set(kinds) - set(metadata.KINDS_BY_NAME))
        if unknown:
            raise ValueError(
                "kinds: unknown chart kind(s) %s; expected some of %s"
                % (unknown, ", ".join(sorted(metadata.KINDS_BY_NAME)))
            )
        kinds = frozenset(kinds)
    if isinstance(source, dict):
        data = source
    elif isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        data = read(source)
    else:
        raise TypeError(
            "source must be a logdir path or the mapping read() returns, got %s"
            % type(source).__name__
        )
    columns = {name: [] for name in DATAFRAME_COLUMNS}
    for run, tags in data.items():
        for tag, series in tags.items():
            if kinds is not None and series.kind not in kinds:
                continue
            for step, wall_time, values in zip(series.steps, series.wall_times, series.values):
                index, label, stat, value = tabular.long_rows(
                    series.kind, series.labels, series.stat_names, values
                )
                n = len(value)
                columns["run"].extend([run] * n)
                columns["tag"].extend([tag] * n)
                columns["kind"].extend([series.kind] * n)
                columns["step"].extend([step] * n)
                columns["wall_time"].extend([wall_time] * n)
                columns["index"].extend(index)
                columns["label"].extend(label)
                columns["stat"].extend(stat)
                columns["value"].extend(value)
    frame = pd.DataFrame(columns, columns=list(DATAFRAME_COLUMNS))
    return frame.astype(
        {"step": "int64", "wall_time": "float64", "index": "int64", "value": "float64"}
    )

