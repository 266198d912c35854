"""torch-visualization: see inside a PyTorch model while it trains.

`SummaryWriter` (torch needed), `read` and `to_dataframe` (torch-free) are
loaded lazily so that the TensorBoard plugin, which lives in this package
too, never imports torch.
"""

__version__ = "0.1.0"

__all__ = ["SummaryWriter", "read", "to_dataframe"]


def __getattr__(name):
    if name == "SummaryWriter":
        from torch_visualization.writer import SummaryWriter

        return SummaryWriter
    if name == "read":
        from torch_visualization.reader import read

        return read
    if name == "to_dataframe":
        from torch_visualization.reader import to_dataframe

        return to_dataframe
    raise AttributeError("module 'torch_visualization' has no attribute %r" % name)
