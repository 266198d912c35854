"""Framework integrations, each an optional extra.

Import the one you use; importing `torch_visualization` (or this package)
never imports Lightning or transformers:

  from torch_visualization.integrations.lightning import TorchVisualizationCallback
  from torch_visualization.integrations.huggingface import TorchVisualizationCallback
"""
