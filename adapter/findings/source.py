"""Reads what the checks need from one run, through TensorBoard's data provider.

The provider is the one TensorBoard serves from (RustBoard or the Python
loader) or one built over a logdir (`torch_visualization.findings.logdir_provider`);
files are never parsed here. Read: the contract tags `watch()` writes
(`gradients/*`, `updates/ratio`, `activations/zero_fraction`), every pie
and confusion matrix, the latest step of each `weights/*` heatmap (all its
steps only when the latest holds NaN/Inf: a NaN weight stays NaN), and the
user's scalar tags whose name contains "loss".
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
from tensorboard.data import provider as tb_provider

from torch_visualization import metadata
from torch_visualization.findings.checks import Series, head_module

logger = logging.getLogger(__name__)

# Tags of the contract (adapter/watch.py writes them; it imports torch, so
# the names are repeated here).
GRAD_NORM = "gradients/norm"
GRAD_MEAN_ABS = "gradients/mean_abs"
GRAD_MAX_ABS = "gradients/max_abs"
GRAD_NONFINITE = "gradients/nonfinite"
UPDATE_RATIO = "updates/ratio"
ZERO_FRACTION = "activations/zero_fraction"
RMS = "activations/rms"
MAX_ABS = "activations/max_abs"
ENTROPY = "attention/entropy"
ATTENTION_PREFIX = "attention/"
WEIGHTS_PREFIX = "weights/"

SCALARS_PLUGIN = "scalars"

# "Keep everything" to both loaders' read calls (they want an int).
ALL_STEPS = 2**31 - 1

# Held steps read of a weight that no watched optimizer steps.
FROZEN_SAMPLES = 64

DEFAULT_BAR_TAGS = (GRAD_NORM, GRAD_MEAN_ABS, GRAD_NONFINITE, UPDATE_RATIO, ZERO_FRACTION,
                    RMS, MAX_ABS, ENTROPY)


@dataclasses.dataclass
class RunData:
    """What the checks read from one run.

    Attributes:
      bars: `{tag: Series}` of the gradient, update and activation bars.
      classes: Pie and confusion `Series` (class collapse).
      pies: Pie `Series` (non-finite outputs).
      weights: One `Series` per `weights/*` tag with NaN/Inf at its latest
        step: every held step, values `[T, 1]` NaN/Inf counts.
      losses: Scalar `Series` of tags whose name contains "loss".
      ndims: `{parameter name: number of dimensions}` from the heatmaps'
        metadata (original shape).
      numel: `{parameter name: number of elements}`, from the same.
      listed: Every tag of ours the run has (read or not).
      unchanged: `{parameter name: (first, last)}`: parameters with a
        gradient that no watched optimizer steps (absent from
        `updates/ratio`) whose weights heatmap is the same at two held
        steps `first` < `last`.
      attention: `{module: (queries, keys, causal)}` of the `attention/*`
        maps (the original shape; causal: the latest stored map is zero
        above the diagonal, True where not read), only when
        `attention/entropy` is read.
    """

    bars: dict = dataclasses.field(default_factory=dict)
    classes: list = dataclasses.field(default_factory=list)
    pies: list = dataclasses.field(default_factory=list)
    weights: list = dataclasses.field(default_factory=list)
    losses: list = dataclasses.field(default_factory=list)
    ndims: dict = dataclasses.field(default_factory=dict)
    numel: dict = dataclasses.field(default_factory=dict)
    listed: set = dataclasses.field(default_factory=set)
    unchanged: dict = dataclasses.field(default_factory=dict)
    attention: dict = dataclasses.field(default_factory=dict)


def list_run_tags(data_provider, ctx, experiment_id, run=None):
    """Lists our tensor tags and the scalar tags naming a loss.

    Args:
      data_provider: A TensorBoard `DataProvider`.
      ctx: TensorBoard request context.
      experiment_id: Experiment ID ("" for a single logdir).
      run: One run, or None for every run.

    Returns:
      `(tensors, scalars)`: `{run: {tag: TensorTimeSeries}}` of our plugin and
      `{run: {tag: ScalarTimeSeries}}` of loss scalars.
    """
    rtf = tb_provider.RunTagFilter(runs=[run]) if run is not None else None
    tensors = data_provider.list_tensors(
        ctx, experiment_id=experiment_id, plugin_name=metadata.PLUGIN_NAME, run_tag_filter=rtf
    )
    scalars = data_provider.list_scalars(
        ctx, experiment_id=experiment_id, plugin_name=SCALARS_PLUGIN, run_tag_filter=rtf
    )
    return tensors, loss_tags_of(scalars)


def loss_tags_of(scalars):
    """`{run: {tag: series}}` of a scalars listing, only tags naming a loss
    (runs without one left out)."""
    losses = {
        name: {tag: series for tag, series in tags.items() if is_loss_tag(tag)}
        for name, tags in scalars.items()
    }
    return {name: tags for name, tags in losses.items() if tags}


def is_loss_tag(tag):
    """Whether a scalar tag is read as a loss ("loss" anywhere in its name)."""
    return "loss" in tag.lower()


def data_version(tensor_tags, loss_tags):
    """A value that changes whenever a run's data changes (for caching).

    TensorBoard always keeps a tag's newest record, so a tag changes exactly
    when its `max_step` or `max_wall_time` does.
    """
    return (
        tuple(sorted((tag, s.max_step, s.max_wall_time) for tag, s in tensor_tags.items())),
        tuple(sorted((tag, s.max_step, s.max_wall_time) for tag, s in loss_tags.items())),
    )


def read_run(data_provider, ctx, experiment_id, run, tensor_tags, loss_tags, *,
             downsample=ALL_STEPS, bar_tags=None, grad_tag=GRAD_NORM, entropy_floor=None):
    """Reads one run's inputs to the checks.

    Args:
      data_provider: A TensorBoard `DataProvider`.
      ctx: TensorBoard request context.
      experiment_id: Experiment ID.
      run: Run name.
      tensor_tags: `{tag: TensorTimeSeries}` of this run (`list_run_tags`).
      loss_tags: `{tag: ScalarTimeSeries}` of this run's loss scalars.
      downsample: Steps to ask for per tag (the server's sampling bound).
      bar_tags: Bars tags to read (the contract's by default).
      grad_tag: The bars tag with gradient norms.
      entropy_floor: The `attention_collapse` threshold (a fraction of a
        uniform map's entropy): only modules with a head below it against
        ln(keys) have their stored map read. None: every module's.

    Returns:
      A `RunData`.
    """
    bar_tags = set(bar_tags or DEFAULT_BAR_TAGS)
    out = RunData()
    parsed = {}
    for tag, series in tensor_tags.items():
        try:
            parsed[tag] = metadata.parse_plugin_data(series.plugin_content)
        except (metadata.ContentError, TypeError) as e:
            logger.debug("findings: skipping run %r tag %r: %s", run, tag, e)
    kinds = {tag: metadata.kind_name(data) for tag, data in parsed.items()}
    out.listed = set(kinds)
    weights = sorted(tag for tag, kind in kinds.items() if kind == "heatmap" and tag.startswith(WEIGHTS_PREFIX))
    for tag in weights:
        shape = parsed[tag].original_shape
        out.ndims[tag[len(WEIGHTS_PREFIX):]] = len(shape)
        out.numel[tag[len(WEIGHTS_PREFIX):]] = int(np.prod(shape, dtype=np.int64))
    # Read as little as the checks need: every read costs (the Python loader
    # decodes every held record of a tag it reads). The NaN/Inf counts show
    # in the norms too (a norm of a tensor with NaN/Inf is NaN/Inf), and the
    # parameters' sizes from the heatmaps turn norms into per-element sizes
    # as well as `gradients/mean_abs` does.
    skip = {GRAD_NONFINITE}
    if grad_tag in parsed and all(label in out.numel for label in parsed[grad_tag].labels):
        skip.add(GRAD_MEAN_ABS)
    wanted = sorted(
        tag for tag, kind in kinds.items()
        if (kind == "bars" and tag in bar_tags and tag not in skip) or kind in ("pie", "confusion")
    )

    for tag, steps, values in _read(data_provider, ctx, experiment_id, run, wanted, downsample, parsed):
        series = Series.of(tag, parsed[tag].labels, steps, values)
        kind = kinds[tag]
        if kind == "bars":
            out.bars[tag] = series
        else:
            out.classes.append(series)
            if kind == "pie":
                out.pies.append(series)

    # Parameters no watched optimizer steps (watch() leaves them out of
    # updates/ratio): did their weights change? Another optimizer may step
    # them (only one of several watched). Up to FROZEN_SAMPLES held steps,
    # always the last, tell since when the weights have stayed as they are.
    norm, ratio = out.bars.get(grad_tag), out.bars.get(UPDATE_RATIO)
    if norm is not None and ratio is not None and len(ratio.labels):
        stepped = set(ratio.labels)
        candidates = [
            WEIGHTS_PREFIX + label for label in norm.labels
            if label not in stepped and WEIGHTS_PREFIX + label in kinds
        ]
        for tag, steps, grids in _read(data_provider, ctx, experiment_id, run, candidates,
                                       min(downsample, FROZEN_SAMPLES), parsed, reduce=_grid):
            same = [np.array_equal(grid, grids[-1], equal_nan=True) for grid in grids]
            start = len(same)
            while start > 0 and same[start - 1]:
                start -= 1
            if len(steps) - start >= 2:
                out.unchanged[tag[len(WEIGHTS_PREFIX):]] = (int(steps[start]), int(steps[-1]))

    # Weights: a NaN weight makes the next gradients NaN, so the heatmaps are
    # read only when the gradients hold NaN/Inf (or are not logged): the
    # latest step of each (a NaN weight stays NaN), all steps only of those
    # holding NaN/Inf.
    if norm is not None and len(norm) and np.isfinite(norm.values).all():
        weights = []
    latest = _read(data_provider, ctx, experiment_id, run, weights, 1, parsed, reduce=_nonfinite_count)
    broken = [tag for tag, _, counts in latest if counts.size and counts[-1] > 0]
    for tag, steps, counts in _read(data_provider, ctx, experiment_id, run, broken, downsample,
                                    parsed, reduce=_nonfinite_count):
        out.weights.append(Series.of(tag, (tag[len(WEIGHTS_PREFIX):],), steps, counts[:, None]))

    # Attention: the entropy is judged against a uniform map of the same
    # shape (the metadata's original shape) and mask; the latest stored map
    # tells whether the mask is causal. Until read, a mask counts as causal:
    # the lower reference, which flags less.
    entropy = out.bars.get(ENTROPY)
    if entropy is not None:
        maps = {}
        for tag, kind in kinds.items():
            shape = parsed[tag].original_shape
            if kind == "attention" and tag.startswith(ATTENTION_PREFIX) and len(shape) == 3:
                maps[tag] = tag[len(ATTENTION_PREFIX):]
                out.attention[maps[tag]] = (int(shape[1]), int(shape[2]), True)
        if entropy_floor is not None:
            # Reading a map decodes every held step of it (Python loader):
            # only a module that looks collapsed against ln(keys), the higher
            # reference, can be flagged at all.
            maps = {tag: module for tag, module in maps.items()
                    if _any_below(entropy, module, entropy_floor * math.log(max(out.attention[module][1], 1)))}
        for tag, _, causal in _read(data_provider, ctx, experiment_id, run, sorted(maps), 1, parsed,
                                    reduce=_causal):
            if causal.size:
                queries, keys, _ = out.attention[maps[tag]]
                out.attention[maps[tag]] = (queries, keys, bool(causal[-1] > 0))

    if loss_tags:
        read = data_provider.read_scalars(
            ctx, experiment_id=experiment_id, plugin_name=SCALARS_PLUGIN, downsample=downsample,
            run_tag_filter=tb_provider.RunTagFilter(runs=[run], tags=sorted(loss_tags)),
        )
        for tag, data in sorted(read.get(run, {}).items()):
            steps, values = _dedupe([d.step for d in data], [d.value for d in data])
            if steps:
                out.losses.append(Series.of(tag, (), steps, np.asarray(values, dtype=np.float64)))
    return out


def _any_below(entropy, module, limit):
    heads = [i for i, label in enumerate(entropy.labels) if head_module(label) == module]
    with np.errstate(invalid="ignore"):
        return bool(heads) and bool(np.any(entropy.values[:, heads] < limit))


def _causal(values):
    """1.0 when a stored `[heads, q, k]` map is zero above its diagonal (and
    square); pooled maps are judged two bins off the diagonal (adaptive
    bins of neighbours may overlap)."""
    if values.ndim != 3 or values.shape[1] != values.shape[2] or values.shape[1] < 2:
        return 0.0
    above = np.triu(np.ones(values.shape[1:], dtype=bool), k=2 if values.shape[1] > 2 else 1)
    return float(np.all(values[:, above] == 0) and np.any(values[:, ~above] > 0))


def _grid(values):
    return metadata.decode_heatmap_values(values)[0]


def _nonfinite_count(values):
    # Heatmap steps may be stored as float16 plus a range row: count the grid's cells.
    grid = metadata.decode_heatmap_values(values)[0]
    return float(grid.size - np.count_nonzero(np.isfinite(grid)))


def _bar_column(values):
    # Bars may be [layers, stats]: column 0 is the one the chart draws.
    return values[:, 0] if values.ndim == 2 else values


def _read(data_provider, ctx, experiment_id, run, tags, downsample, parsed, reduce=None):
    """Yields `(tag, steps, values)` per tag; skips records that disagree with
    their metadata (as the plugin's routes do) and tags that cannot be decoded."""
    if not tags:
        return
    try:
        read = data_provider.read_tensors(
            ctx, experiment_id=experiment_id, plugin_name=metadata.PLUGIN_NAME,
            downsample=downsample, run_tag_filter=tb_provider.RunTagFilter(runs=[run], tags=tags),
        )
    except (ValueError, TypeError) as e:
        # One damaged record makes the providers' whole call raise; read the
        # tags one by one so the rest of the run is still diagnosed.
        if len(tags) == 1:
            logger.warning("findings: cannot decode run %r tag %r: %s", run, tags[0], e)
            return
        for tag in tags:
            yield from _read(data_provider, ctx, experiment_id, run, [tag], downsample, parsed, reduce)
        return
    for tag in tags:
        data = parsed[tag]
        steps, rows = [], []
        for datum in read.get(run, {}).get(tag, []):
            values = np.asarray(datum.numpy)
            try:
                metadata.check_values(data, values)
                if reduce is not None:
                    values = reduce(values)
            except metadata.ContentError:
                continue
            if reduce is None and metadata.kind_name(data) == "bars":
                values = _bar_column(values)
            steps.append(datum.step)
            rows.append(values)
        steps, rows = _dedupe(steps, rows)
        if not steps:
            continue
        if reduce is None and len({np.shape(r) for r in rows}) > 1:
            # A restarted run that logged another layer list under the same
            # tag: keep the steps shaped like the newest.
            shape = np.shape(rows[-1])
            keep = [i for i, r in enumerate(rows) if np.shape(r) == shape]
            steps, rows = [steps[i] for i in keep], [rows[i] for i in keep]
        yield tag, steps, np.asarray(rows, dtype=np.float64)


def _dedupe(steps, values):
    """Sorted by step; the later record wins where a restarted run logged a step twice."""
    by_step = dict(zip(steps, values))
    ordered = sorted(by_step)
    return ordered, [by_step[s] for s in ordered]
