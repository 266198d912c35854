"""torch-visualization: see inside a PyTorch model while it trains.

`SummaryWriter` (torch needed) and `read` (torch-free) are loaded lazily so
that the TensorBoard plugin, which lives in this package too, never imports
torch.
"""

__version__ = "0.1.0"

__all__ = ["SummaryWriter", "read"]


def __getattr__(name):
    if name == "SummaryWriter":
        from torch_visualization.writer import SummaryWriter

        return SummaryWriter
    if name == "read":
        from torch_visualization.reader import read

        return read
    raise AttributeError("module 'torch_visualization' has no attribute %r" % name)
