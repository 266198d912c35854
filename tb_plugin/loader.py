"""Entry point of the plugin: a `TBLoader` that fixes the sampling default.

TensorBoard keeps only a sample of each tag's steps for third-party tensor
data (10 in the Python loader, 100 in RustBoard). Users expect the step slider
to reach every logged step, so unless they passed their own
`--samples_per_plugin torch_visualization=N` we raise it to a bounded default.
The user's flag always wins.

Our events live in an event file of their own beside the one torch writes
the stock scalars to (adapter/sink.py). TensorBoard's Python loader
(`--load_fast=false`, and every logdir RustBoard does not serve, such as
`s3://`) polls only a run's LAST event file unless `--reload_multifile` is
on, so one of the two would stop updating during training: unless the user
set that flag, we turn it on. (RustBoard always reads every file.)
"""

from tensorboard.plugins import base_plugin

from torch_visualization import metadata

# Steps kept per run and tag. Bounded so that memory stays bounded: a 64x64
# heatmap step is 16 KiB, so one heatmap tag costs at most ~16 MiB.
DEFAULT_SAMPLES = 1000


class TorchVisualizationLoader(base_plugin.TBLoader):
    """Loads `TorchVisualizationPlugin` and sets its sampling default."""

    def fix_flags(self, flags):
        """Adds our default to `--samples_per_plugin` unless the user set one,
        and turns on `--reload_multifile` unless the user set it."""
        samples = dict(getattr(flags, "samples_per_plugin", None) or {})
        samples.setdefault(metadata.PLUGIN_NAME, DEFAULT_SAMPLES)
        flags.samples_per_plugin = samples
        if getattr(flags, "reload_multifile", False) is None:
            flags.reload_multifile = True

    def load(self, context):
        """Returns the plugin (imported here so flag parsing stays cheap)."""
        from torch_visualization.tb_plugin.plugin import TorchVisualizationPlugin

        return TorchVisualizationPlugin(context)
