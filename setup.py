"""Packaging for torch-visualization.

One import namespace, as DESIGN.md lays it out:
  adapter/   -> torch_visualization            (writer, summaries, hooks, reader)
  tb_plugin/ -> torch_visualization.tb_plugin  (TensorBoard plugin, no torch import)
  frontend/  -> torch_visualization/frontend   (ES modules served by the plugin)
"""

from setuptools import setup

setup(
    name="torch-visualization",
    version="0.1.0",
    description="See inside a PyTorch model while it trains: a TensorBoard tab "
    "with weight heatmaps, class pies, gradient bars and scatter plots.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "torch_visualization",
        "torch_visualization.tb_plugin",
        "torch_visualization.frontend",
    ],
    package_dir={
        "torch_visualization": "adapter",
        "torch_visualization.tb_plugin": "tb_plugin",
        "torch_visualization.frontend": "frontend",
    },
    package_data={
        "torch_visualization": ["*.proto"],
        "torch_visualization.frontend": ["*.js", "*.css", "views/*.js"],
    },
    include_package_data=False,
    install_requires=[
        # torch is deliberately not listed: users install the build that fits
        # their hardware (see README); the plugin side never imports it.
        "numpy",
        "tensorboard>=2.21,<2.22",
        "protobuf>=6.31.1,<8",
    ],
    extras_require={
        "test": [
            "pytest",
            "hypothesis",
            "playwright",
            "scikit-learn",
            "build",
            "grpcio-tools",
        ],
        "demo": ["scikit-learn"],
    },
    entry_points={
        "tensorboard_plugins": [
            "torch_visualization = torch_visualization.tb_plugin.loader:TorchVisualizationLoader",
        ],
    },
)
