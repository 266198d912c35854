"""The diagnosis engine: what is wrong in a run, where, and since when.

One implementation for the tab (`GET /findings`, tb_plugin/plugin.py) and the
command line (`python -m torch_visualization summary`). Torch-free.

- `model.py`: the `Finding` and the `Thresholds`;
- `checks.py`: pure checks, numpy series in, findings out;
- `source.py`: reads a run through TensorBoard's data provider.

Usage from Python::

    from torch_visualization import findings
    for run, found in findings.diagnose_logdir("runs").items():
        for finding in found:
            print(run, finding.kind, finding.labels, finding.first_step)
"""

from __future__ import annotations

import dataclasses

from tensorboard import context as tb_context

from torch_visualization import metadata
from torch_visualization.findings import checks, model, source
from torch_visualization.findings.model import (
    ERROR,
    KINDS,
    WARNING,
    Finding,
    Thresholds,
    sort_findings,
)

__all__ = [
    "ERROR", "KINDS", "WARNING", "Finding", "Thresholds",
    "diagnose", "diagnose_logdir", "evaluate", "logdir_provider",
]


def evaluate(data, thresholds=None, *, grad_tag=source.GRAD_NORM, zero_tag=source.ZERO_FRACTION):
    """Runs every check on one run's data.

    Args:
      data: A `source.RunData`.
      thresholds: `Thresholds` (the defaults when None).
      grad_tag: Bars tag with the gradient L2 norms.
      zero_tag: Bars tag with the activations' zero fractions.

    Returns:
      The run's findings, errors first, then by first step.
    """
    thresholds = thresholds or Thresholds()
    bars = data.bars
    found = []
    norm = bars.get(grad_tag)
    if norm is not None and len(norm):
        found += checks.exploding_gradients(norm, thresholds)
        scale = checks.gradient_scale(norm, bars.get(source.GRAD_MEAN_ABS), data.numel)
        found += checks.vanishing_gradients(norm, scale, thresholds,
                                            ratio=bars.get(source.UPDATE_RATIO))
        ratio = bars.get(source.UPDATE_RATIO)
        if ratio is not None and len(ratio):
            exclude = checks.underflow_labels(norm, scale, thresholds)
            found += checks.frozen_parameters(
                norm, ratio, thresholds, exclude=exclude, unchanged=data.unchanged
            )
    ratio = bars.get(source.UPDATE_RATIO)
    if ratio is not None:
        found += checks.large_updates(ratio, thresholds, ndims=data.ndims)
    zero = bars.get(zero_tag)
    if zero is not None:
        found += checks.dead_units(zero, thresholds)
    gradient_tags = [bars[t] for t in (source.GRAD_NONFINITE, grad_tag, source.GRAD_MEAN_ABS) if t in bars]
    gradients = checks.nonfinite(gradient_tags, what="gradients", counts={source.GRAD_NONFINITE})
    if gradients and source.GRAD_NONFINITE in data.listed:
        # Open the chart that counts them.
        gradients = [dataclasses.replace(
            gradients[0], tag=source.GRAD_NONFINITE,
            view=model.step_view(source.GRAD_NONFINITE, gradients[0].first_step),
        )]
    found += gradients
    found += checks.nonfinite(data.weights, what="weights", counts={w.tag for w in data.weights})
    for pie in data.pies:
        found += checks.nonfinite([pie], what="outputs of %s" % pie.tag)
    entropy = bars.get(source.ENTROPY)
    if entropy is not None:
        found += checks.attention_collapse(entropy, data.attention, thresholds)
    max_abs, rms = bars.get(source.MAX_ABS), bars.get(source.RMS)
    if max_abs is not None and rms is not None:
        found += checks.activation_outliers(max_abs, rms, thresholds, zero_fraction=bars.get(zero_tag))
    found += _one_collapse([
        f for series in data.classes for f in checks.class_collapse(series, thresholds)
    ])
    for loss in data.losses:
        found += checks.loss_divergence(loss, thresholds)
    return sort_findings(found)


def _one_collapse(collapses):
    """One `class_collapse` per run: the pie, predicted-class pie and
    confusion matrix of one evaluation say the same thing three times."""
    if len(collapses) <= 1:
        return collapses
    # Confusion matrices know the true classes: prefer them, then the earliest.
    best = min(collapses, key=lambda f: (not f.message.startswith("predictions"), f.first_step))
    others = sorted({f.tag for f in collapses if f is not best})
    return [
        Finding(
            best.kind, best.severity, best.tag, best.labels, best.first_step, best.last_step,
            best.message + " (also in %s)" % ", ".join(others), best.view, best.value,
        )
    ]


def diagnose(data_provider, ctx, experiment_id, run, thresholds=None, *,
             listing=None, downsample=source.ALL_STEPS,
             grad_tag=source.GRAD_NORM, zero_tag=source.ZERO_FRACTION):
    """Diagnoses one run read through a TensorBoard data provider.

    Args:
      data_provider: The `DataProvider` (the plugin's `context.data_provider`,
        or `logdir_provider(logdir)`).
      ctx: TensorBoard request context.
      experiment_id: Experiment ID ("" for a plain logdir).
      run: Run name.
      thresholds: `Thresholds` (the defaults when None).
      listing: `(tensor_tags, loss_tags)` of this run when the caller already
        listed them (`source.list_run_tags`); listed here otherwise.
      downsample: Steps per tag to read (the server's sampling bound).
      grad_tag: Bars tag with the gradient L2 norms.
      zero_tag: Bars tag with the activations' zero fractions.

    Returns:
      A list of `Finding`s (empty when nothing is wrong or the run has none
      of our data).
    """
    if listing is None:
        tensors, losses = source.list_run_tags(data_provider, ctx, experiment_id, run)
        listing = (tensors.get(run, {}), losses.get(run, {}))
    tensor_tags, loss_tags = listing
    data = source.read_run(
        data_provider, ctx, experiment_id, run, tensor_tags, loss_tags,
        downsample=downsample, bar_tags={grad_tag, zero_tag, *source.DEFAULT_BAR_TAGS},
        grad_tag=grad_tag, entropy_floor=(thresholds or Thresholds()).entropy,
    )
    return evaluate(data, thresholds, grad_tag=grad_tag, zero_tag=zero_tag)


def logdir_provider(logdir):
    """TensorBoard's Python data provider over `logdir`, keeping every step.

    Built as `torch_visualization.reader` builds its loader: a one-shot read,
    so nothing is sampled away. Any logdir TensorBoard reads works
    (`s3://...` included).

    Returns:
      `(data_provider, ctx, experiment_id)`.
    """
    from tensorboard.backend.event_processing import data_provider as tb_data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0, source.SCALARS_PLUGIN: 0}
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    return tb_data_provider.MultiplexerDataProvider(multiplexer, str(logdir)), tb_context.RequestContext(), ""


def diagnose_logdir(logdir, thresholds=None, **kwargs):
    """Diagnoses every run of ours under `logdir`.

    Args:
      logdir: A directory of runs (as given to `tensorboard --logdir`).
      thresholds: `Thresholds` (the defaults when None).
      **kwargs: `grad_tag`, `zero_tag` as for `diagnose`.

    Returns:
      `{run: [Finding, ...]}` for every run with data of this plugin, in
      run order.
    """
    data_provider, ctx, experiment_id = logdir_provider(logdir)
    tensors, losses = source.list_run_tags(data_provider, ctx, experiment_id)
    return {
        run: diagnose(
            data_provider, ctx, experiment_id, run, thresholds,
            listing=(tensors[run], losses.get(run, {})), **kwargs,
        )
        for run in sorted(tensors)
    }
