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

from torch_visualization import metadata

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
