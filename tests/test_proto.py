"""The generated protobuf module matches its .proto and imports everywhere
TensorBoard's protobuf requirement allows."""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

import pytest
from google.protobuf import descriptor_pb2
from packaging.requirements import Requirement

from torch_visualization import plugin_data_pb2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO = os.path.join(REPO, "adapter", "plugin_data.proto")
GENERATED = os.path.join(REPO, "adapter", "plugin_data_pb2.py")
OLDEST_PROTOBUF_DIR = os.path.join(sys.prefix, "protobuf-oldest")


def protobuf_minimum(distribution):
    """The lowest protobuf `distribution` declares it accepts."""
    for line in importlib.metadata.requires(distribution):
        requirement = Requirement(line)
        if requirement.name == "protobuf" and not requirement.marker:
            minimums = [s.version for s in requirement.specifier if s.operator == ">="]
            assert len(minimums) == 1, requirement
            return minimums[0]
    raise AssertionError("%s declares no protobuf requirement" % distribution)


def test_generated_descriptor_matches_proto(tmp_path):
    from grpc_tools import protoc

    package_dir = tmp_path / "torch_visualization"
    package_dir.mkdir()
    shutil.copy(PROTO, package_dir / "plugin_data.proto")
    out = tmp_path / "descriptor.pb"
    status = protoc.main(
        ["protoc", "-I%s" % tmp_path, "--descriptor_set_out=%s" % out, str(package_dir / "plugin_data.proto")]
    )
    assert status == 0
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    # protoc's descriptor sets carry json_name; Python gencode strips it.
    for message in compiled.message_type:
        for field in message.field:
            field.ClearField("json_name")
    committed = descriptor_pb2.FileDescriptorProto.FromString(plugin_data_pb2.DESCRIPTOR.serialized_pb)
    assert committed == compiled, "adapter/plugin_data_pb2.py is stale: run `make proto`"


def test_gencode_targets_the_oldest_protobuf_we_allow():
    """Our gencode imports under every protobuf setup.py accepts (its lowest
    bound), which every TensorBoard we accept allows too (TensorBoard 2.21's
    own minimum is the same 6.31.1; older ones accept older protobufs)."""
    with open(GENERATED, encoding="utf-8") as f:
        header = f.read(2000)
    version = re.search(r"# Protobuf Python Version: (\S+)", header).group(1)
    assert version == protobuf_minimum("torch-visualization")
    from packaging.version import Version

    assert Version(protobuf_minimum("tensorboard")) <= Version(version)


@pytest.mark.parametrize("which", ["oldest", "installed"])
def test_generated_module_imports(which):
    env = dict(os.environ)
    if which == "oldest":
        assert os.path.isdir(OLDEST_PROTOBUF_DIR), "run `make setup`: %s is missing" % OLDEST_PROTOBUF_DIR
        env["PYTHONPATH"] = OLDEST_PROTOBUF_DIR
        expected = protobuf_minimum("torch-visualization")
    else:
        expected = importlib.metadata.version("protobuf")
    code = (
        "import google.protobuf as p; from torch_visualization import plugin_data_pb2 as m; "
        "d = m.PluginData(version=1, kind=m.PluginData.PIE, labels=['a']); "
        "assert m.PluginData.FromString(d.SerializeToString()).labels == ['a']; print(p.__version__)"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
