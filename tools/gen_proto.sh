#!/usr/bin/env bash
# Regenerates adapter/plugin_data_pb2.py from adapter/plugin_data.proto.
#
# Uses grpcio-tools 1.74.0, whose protoc emits gencode for protobuf 6.31.1:
# the oldest runtime setup.py allows, so the file imports under every
# protobuf version TensorBoard accepts (6.31.1 up to, not including, 8).
# The .proto is compiled as torch_visualization/plugin_data.proto so that its
# name in protobuf's global descriptor pool cannot collide with another
# package's plugin_data.proto.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${PROTOGEN_VENV:-.protogen-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "grpcio-tools==1.74.0"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/torch_visualization"
cp adapter/plugin_data.proto "$work/torch_visualization/"
"$venv/bin/python" -m grpc_tools.protoc -I"$work" --python_out="$work" \
  "$work/torch_visualization/plugin_data.proto"
cp "$work/torch_visualization/plugin_data_pb2.py" adapter/plugin_data_pb2.py
echo "wrote adapter/plugin_data_pb2.py"
