"""The attention chart kind: the pure summary builder, and its values served
back by the plugin (/tags, /data, /csv; /series refuses it) from real event
files under both of TensorBoard's loaders."""

from __future__ import annotations

import csv
import io
import json
import urllib.parse

import numpy as np
import pytest
from tensorboard.compat.proto import summary_pb2, types_pb2
from tensorboard.util import tensor_util
from werkzeug.test import Client

from conftest import http_get, make_wsgi_app, tensorboard_server
from torch_visualization import metadata, summary
from torch_visualization.tb_plugin.encoding import decode_array

PREFIX = "/data/plugin/torch_visualization"
TOKENS = ["The", "cat", "<sat>", "on", "&amp;"]


def only_value(proto):
    assert isinstance(proto, summary_pb2.Summary)
    assert len(proto.value) == 1
    return proto.value[0]


def causal_maps(heads, n, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(heads, n, n))
    scores[:, np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]] = -np.inf
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------ the builder --


def test_attention_fields_and_tokens():
    weights = causal_maps(2, 5)
    value = only_value(summary.attention_summary("attention/blocks.0.attn", weights, original_shape=(2, 5, 5), tokens=TOKENS))
    assert value.tag == "attention/blocks.0.attn"
    assert value.tensor.dtype == types_pb2.DT_FLOAT
    np.testing.assert_array_equal(tensor_util.make_ndarray(value.tensor), weights)
    assert value.metadata.data_class == summary_pb2.DATA_CLASS_TENSOR
    data = metadata.parse_plugin_data(value.metadata.plugin_data.content)
    assert data.kind == metadata.PluginData.ATTENTION
    assert metadata.kind_name(data) == "attention"
    assert list(data.labels) == TOKENS
    assert list(data.original_shape) == [2, 5, 5]
    assert data.reduction == "none"
    metadata.check_values(data, tensor_util.make_ndarray(value.tensor))


def test_attention_pooled_without_tokens_keeps_nan_and_out_of_range():
    weights = np.full((4, 64, 64), 1.0 / 64, dtype=np.float64)
    weights[1, 2, 3] = np.nan
    weights[2, 0, 0] = 1.5  # pooled or unnormalised maps are kept as given
    weights[3, 0, 1] = -0.25
    value = only_value(
        summary.attention_summary("a", weights, original_shape=[4, 300, 300], reduction="mean_pool")
    )
    stored = tensor_util.make_ndarray(value.tensor)
    assert stored.dtype == np.float32 and stored.shape == (4, 64, 64)
    assert np.isnan(stored[1, 2, 3]) and stored[2, 0, 0] == 1.5 and stored[3, 0, 1] == -0.25
    data = metadata.parse_plugin_data(value.metadata.plugin_data.content)
    assert list(data.labels) == [] and data.reduction == "mean_pool"
    assert list(data.original_shape) == [4, 300, 300]


@pytest.mark.parametrize(
    "weights, kwargs, error, words",
    [
        (np.ones((5, 5)), {"original_shape": (5, 5)}, ValueError, "3-D"),
        (np.ones((1, 2, 2, 2)), {"original_shape": (1, 2, 2)}, ValueError, "3-D"),
        (np.ones((2, 0, 3)), {"original_shape": (2, 1, 3)}, ValueError, "empty"),
        (np.array([[["a"]]]), {"original_shape": (1, 1, 1)}, TypeError, "real numbers"),
        (np.ones((2, 3, 3)), {"original_shape": (2, 3, 3), "reduction": "max"}, ValueError, "reduction"),
        (np.ones((2, 3, 3)), {"original_shape": (2, 3)}, ValueError, "original_shape"),
        (np.ones((2, 3, 3)), {"original_shape": "abc"}, TypeError, "original_shape"),
        (np.ones((2, 3, 3)), {"original_shape": (3, 3, 3)}, ValueError, "original_shape"),
        (np.ones((2, 3, 3)), {"original_shape": (2, 9, 9)}, ValueError, "differs"),
        (np.ones((2, 3, 3)), {"original_shape": (2, 2, 2), "reduction": "mean_pool"}, ValueError, "cannot come"),
        (np.ones((2, 3, 3)), {"original_shape": (2, 3, 3), "tokens": ["a", "b"]}, ValueError, "2 tokens given for 3"),
        (np.ones((2, 3, 3)), {"original_shape": (2, 3, 3), "tokens": ["a", 1, "c"]}, TypeError, "tokens must be strings"),
        (np.ones((2, 2, 3)), {"original_shape": (2, 2, 3), "tokens": ["a", "b", "c"]}, ValueError, "differ"),
        (np.ones((2, 3, 3)), {"original_shape": (2, 6, 6), "reduction": "mean_pool", "tokens": ["a", "b", "c"]},
         ValueError, "unpooled"),
    ],
)
def test_attention_bad_input_names_the_tag(weights, kwargs, error, words):
    with pytest.raises(error) as info:
        summary.attention_summary("attention/blk.0", weights, **kwargs)
    assert "attention/blk.0" in str(info.value)
    assert words in str(info.value), str(info.value)


def test_attention_rejects_a_bad_tag():
    with pytest.raises(TypeError, match="tag"):
        summary.attention_summary("", np.ones((1, 2, 2)), original_shape=(1, 2, 2))


# ------------------------------------------------- served by the plugin --


@pytest.fixture(scope="module")
def attention_logdir(tmp_path_factory):
    """One run: an unpooled map with tokens (one NaN at step 2) and a pooled one."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = tmp_path_factory.mktemp("attention")
    expected = {}
    writer = SummaryWriter(str(logdir / "run"))
    for step in (0, 1, 2):
        small = causal_maps(2, 5, seed=step)
        if step == 2:
            small[1, 4, 0] = np.nan
        big = np.random.default_rng(step).random((3, 8, 6)).astype(np.float32)
        writer.file_writer.add_summary(
            summary.attention_summary("attention/blocks.0.attn", small, original_shape=(2, 5, 5), tokens=TOKENS),
            step,
        )
        writer.file_writer.add_summary(
            summary.attention_summary("attention/blocks.1.attn", big, original_shape=(3, 100, 90), reduction="mean_pool"),
            step,
        )
        expected[step] = {"attention/blocks.0.attn": small, "attention/blocks.1.attn": big}
    writer.close()
    return logdir, expected


def url(route, **query):
    return PREFIX + route + "?" + urllib.parse.urlencode(query)


def check_served(get, expected):
    """`get(path) -> (status, body bytes)` against the written values."""
    status, body = get(PREFIX + "/tags")
    assert status == 200, body
    tags = json.loads(body)["runs"]["run"]
    small = tags["attention/blocks.0.attn"]
    assert small["kind"] == "attention" and small["labels"] == TOKENS
    assert small["original_shape"] == [2, 5, 5] and small["reduction"] == "none"
    big = tags["attention/blocks.1.attn"]
    assert big["labels"] == [] and big["original_shape"] == [3, 100, 90] and big["reduction"] == "mean_pool"
    assert small["max_step"] == big["max_step"] == 2

    for step in (0, 2):
        for tag, values in expected[step].items():
            status, body = get(url("/data", run="run", tag=tag, step=step))
            assert status == 200, body
            data = json.loads(body)
            assert data["kind"] == "attention" and data["steps"] == [0, 1, 2]
            assert data["shape"] == list(values.shape)
            np.testing.assert_array_equal(decode_array(data["values"]), values.astype(np.float64))
            assert data["nonfinite"] == int(np.isnan(values).sum())
    assert json.loads(get(url("/data", run="run", tag="attention/blocks.0.attn", step=2))[1])["values"][1][4][0] == "NaN"

    status, body = get(url("/series", run="run", tag="attention/blocks.0.attn"))
    assert status == 400 and b"attention" in body, body

    status, body = get(url("/csv", run="run", tag="attention/blocks.0.attn"))
    assert status == 200, body
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    assert len(rows) == 3 * 2 * 5 * 5
    step2 = [r for r in rows if r["step"] == "2"]
    assert [r["label"] for r in step2[:3]] == ["h0,0,0", "h0,0,1", "h0,0,2"]
    assert {r["kind"] for r in rows} == {"attention"} and {r["stat"] for r in rows} == {"value"}
    for r in step2:
        h, q, k = (int(x) for x in r["label"][1:].split(","))
        assert int(r["index"]) == (h * 5 + q) * 5 + k
        value = expected[2]["attention/blocks.0.attn"][h, q, k]
        if np.isnan(value):
            assert r["value"] == "NaN"
        else:
            assert float(r["value"]) == pytest.approx(float(value), rel=1e-6)


def test_plugin_serves_attention_python_loader(attention_logdir):
    logdir, expected = attention_logdir
    client = Client(make_wsgi_app(logdir))

    def get(path):
        response = client.get(path)
        return response.status_code, response.get_data()

    check_served(get, expected)


def test_plugin_serves_attention_rustboard(attention_logdir):
    logdir, expected = attention_logdir
    with tensorboard_server(logdir, "--load_fast=true") as server:
        server.wait_for_tags(["run"])
        check_served(lambda path: http_get(server.url + path), expected)
