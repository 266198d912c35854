"""Long-format rows of one chart step: one row per number.

Shared by `torch_visualization.to_dataframe()` (pandas) and the plugin's CSV
export, so both name every number the same way. Torch-free and pure.
"""

from __future__ import annotations

import numpy as np

# Column order of every long-format table we produce.
COLUMNS = ("run", "tag", "kind", "step", "wall_time", "index", "label", "stat", "value")


def _name(labels, i):
    return labels[i] if i < len(labels) else str(i)


def long_rows(kind, labels, stat_names, values):
    """Names every number of one step of a chart.

    Args:
      kind: "heatmap", "pie", "bars", "scatter", "confusion", "attention"
        or "tokens".
      labels: The tag's class or layer names (may be empty).
      stat_names: Bars: names of the stat columns (may be empty).
      values: The step's numpy array (shapes as in docs/http_api.md).

    Returns:
      `(index, label, stat, value)` lists of equal length:
      heatmap: index = flattened cell, label = "row,col", stat = "value";
      pie / 1-D bars: index = class/layer, label = its name, stat = "value";
      2-D bars: one row per (layer, stat), stat = the stat's name;
      scatter: two rows per point (stat "x" and "y"), label = class name or
      "" for points without a class;
      confusion: index = true class, label = its name, stat = "predicted:"
      + the predicted class's name, value = the count;
      attention: index = flattened (head, query, key), label =
      "h<head>,<query>,<key>", stat = "value";
      tokens: index = position, label = the token's text, stat = "token",
      value = NaN (a token is text, not a number).
    """
    if kind == "tokens":
        texts = [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t)
                 for t in np.asarray(values).tolist()]
        return list(range(len(texts))), texts, ["token"] * len(texts), [float("nan")] * len(texts)
    values = np.asarray(values, dtype=np.float64)
    labels = list(labels)
    if kind == "heatmap":
        cols = values.shape[1]
        flat = values.ravel()
        index = list(range(flat.size))
        label = ["%d,%d" % divmod(i, cols) for i in index]
        return index, label, ["value"] * flat.size, flat.tolist()
    if kind == "attention":
        heads, queries, keys = values.shape
        flat = values.ravel()
        label = ["h%d,%d,%d" % (h, q, k)
                 for h in range(heads) for q in range(queries) for k in range(keys)]
        return list(range(flat.size)), label, ["value"] * flat.size, flat.tolist()
    if kind == "scatter":
        index, label, stat, value = [], [], [], []
        for i, (x, y, cls) in enumerate(values):
            name = _name(labels, int(cls)) if np.isfinite(cls) and cls >= 0 else ""
            index += [i, i]
            label += [name, name]
            stat += ["x", "y"]
            value += [x, y]
        return index, label, stat, value
    if kind == "confusion":
        columns = ["predicted:" + _name(labels, j) for j in range(values.shape[1])]
    elif values.ndim == 1:
        values = values[:, None]
        columns = ["value"]
    else:
        columns = [_name(list(stat_names), j) for j in range(values.shape[1])]
    index, label, stat, value = [], [], [], []
    for i, row in enumerate(values):
        name = _name(labels, i)
        for j, number in enumerate(row.tolist()):
            index.append(i)
            label.append(name)
            stat.append(columns[j])
            value.append(number)
    return index, label, stat, value
