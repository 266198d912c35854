"""The wheel carries the frontend, and an installed wheel is found by TensorBoard."""

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy of the sources: building in the repository
    # leaves build/ behind, whose stale modules would ship in later wheels.
    source = tmp_path_factory.mktemp("source") / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
            ".pytest_cache", ".hypothesis", "node_modules", "runs",
        ),
    )
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = glob.glob(str(out / "torch_visualization-*.whl"))
    return path


def test_wheel_contains_frontend_plugin_and_proto(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    frontend = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "frontend", "**", "*.js"), recursive=True))
    assert frontend, "no frontend files in the repository"
    for path in frontend:
        assert "torch_visualization/" + path in names
    for module in (
        "__init__.py", "writer.py", "summary.py", "watch.py", "event_records.py", "plugin_data_pb2.py",
        "tb_plugin/plugin.py", "tb_plugin/loader.py", "integrations/lightning.py", "integrations/huggingface.py",
    ):
        assert "torch_visualization/" + module in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[tensorboard_plugins]" in text
    assert "torch_visualization.tb_plugin.loader:TorchVisualizationLoader" in text


def test_installed_wheel_is_discovered_by_tensorboard(wheel, tmp_path):
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), wheel],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Run with site disabled (-S): the venv's site-packages is added by hand,
    # without processing .pth files, so the repository's editable install is
    # invisible and only the installed wheel can provide the plugin.
    from torch_visualization import SummaryWriter

    logdir = tmp_path / "logs"
    with SummaryWriter(str(logdir / "run")) as writer:
        writer.add_class_pie("p", [1, 2], 0)
    venv_site = sysconfig.get_paths()["purelib"]
    script = textwrap.dedent(
        """
        import sys, json
        sys.path[:0] = [%r, %r]
        import torch_visualization
        from tensorboard import default, program
        from tensorboard.backend import application
        from tensorboard.backend.event_processing import data_ingester
        from werkzeug.test import Client
        tb = program.TensorBoard(plugins=default.get_plugins())
        tb.configure(argv=["tensorboard", "--logdir", %r, "--load_fast=false",
                           "--reload_task=blocking", "--reload_interval=0"])
        ingester = data_ingester.LocalDataIngester(tb.flags)
        ingester.start()
        app = application.TensorBoardWSGIApp(tb.flags, tb.plugin_loaders, ingester.data_provider,
                                             tb.assets_zip_provider, ingester.deprecated_multiplexer)
        client = Client(app)
        listing = json.loads(client.get("/data/plugins_listing").get_data())
        index = client.get("/data/plugin/torch_visualization/index.js")
        print(json.dumps({"module": torch_visualization.__file__,
                          "entry": listing.get("torch_visualization"),
                          "index_status": index.status_code}))
        """
    ) % (str(target), venv_site, str(logdir))
    result = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["module"].startswith(str(target))
    assert report["entry"]["enabled"] is True
    assert report["entry"]["tab_name"] == "Model Insight"
    assert report["index_status"] == 200
