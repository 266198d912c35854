"""Packaging for torch-visualization.

One import namespace, as DESIGN.md lays it out:
  adapter/   -> torch_visualization            (writer, summaries, hooks, reader)
  tb_plugin/ -> torch_visualization.tb_plugin  (TensorBoard plugin, no torch import)
  frontend/  -> torch_visualization/frontend   (ES modules served by the plugin)
"""

import sys

from setuptools import Extension, setup

# One-pass CPU statistics for watch() (adapter/_fused.c, plain C, no torch
# headers). Optional: where no C compiler is found the package installs
# without it and watch() computes the same statistics with PyTorch ops.
FUSED = Extension(
    "torch_visualization._fused",
    sources=["adapter/_fused.c"],
    extra_compile_args=[] if sys.platform == "win32" else ["-O3", "-std=c11", "-Wno-psabi"],
    optional=True,
)

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
        "torch_visualization.integrations",
        "torch_visualization.watch",
        "torch_visualization.findings",
    ],
    package_dir={
        "torch_visualization": "adapter",
        "torch_visualization.tb_plugin": "tb_plugin",
        "torch_visualization.integrations": "adapter/integrations",
        "torch_visualization.watch": "adapter/watch",
        "torch_visualization.findings": "adapter/findings",
        "torch_visualization.frontend": "frontend",
    },
    package_data={
        "torch_visualization": ["*.proto"],
        "torch_visualization.frontend": ["*.js", "*.css", "views/*.js"],
    },
    include_package_data=False,
    ext_modules=[FUSED],
    install_requires=[
        # torch is deliberately not listed: users install the build that fits
        # their hardware (see README); the plugin side never imports it.
        # Lower bounds are the oldest versions CI tests: `make test` runs the
        # TensorBoard-facing tests again in .venv-tb-oldest with exactly these
        # (Makefile TB_OLDEST, NUMPY_OLDEST, PROTOBUF_OLDEST; test_packaging.py
        # keeps them equal). TensorBoard <= 2.16 itself needs numpy < 2, which
        # it does not declare and a requirement here cannot make conditional
        # on the installed TensorBoard; the oldest venv has numpy 1.23.5.
        "numpy>=1.23.5",
        # Every TensorBoard whose plugin API we use: 2.12.0 is the oldest that
        # installs beside protobuf >= 6.31.1 (2.11 and older cap it below 4).
        "tensorboard>=2.12.0,<3",
        "protobuf>=6.31.1,<8",
        # C CRC-32C for event records (TensorBoard's fallback is pure Python).
        "google-crc32c>=1.5",
    ],
    extras_require={
        # Integrations are optional: importing torch_visualization never
        # imports them.
        "lightning": ["lightning>=2.0"],
        "huggingface": ["transformers>=5.0", "accelerate>=1.1.0"],
        "s3": ["boto3"],
        "pandas": ["pandas"],
        "demo": ["scikit-learn"],
        # Everything the test suite needs, pinned to the versions tested.
        "test": [
            "pytest",
            "hypothesis",
            "playwright",
            "scikit-learn",
            "grpcio-tools",
            "lightning==2.6.6",
            "transformers==5.24.0",
            "accelerate==1.15.0",
            "pandas==3.1.1",
            "boto3==1.44.8",
            "moto[s3]==5.2.5",
            # moto's loopback server mode
            "flask==3.1.3",
            "flask-cors==6.0.5",
        ],
    },
    entry_points={
        "tensorboard_plugins": [
            "torch_visualization = torch_visualization.tb_plugin.loader:TorchVisualizationLoader",
        ],
    },
)
