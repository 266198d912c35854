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


def python_loader_get(logdir):
    """`get(path) -> (status, body)` through the Python loader's WSGI app."""
    client = Client(make_wsgi_app(logdir))

    def get(path):
        response = client.get(path)
        return response.status_code, response.get_data()

    return get


def test_plugin_serves_attention_python_loader(attention_logdir):
    logdir, expected = attention_logdir
    check_served(python_loader_get(logdir), expected)


def test_plugin_serves_attention_rustboard(attention_logdir):
    logdir, expected = attention_logdir
    with tensorboard_server(logdir, "--load_fast=true") as server:
        server.wait_for_tags(["run"])
        check_served(lambda path: http_get(server.url + path), expected)


# ---------------------------------------------------------------- tokens --

WORDS = ["<s>", "The", " cat", " sat", " on", " the", " mat", ".", "\n", " naïve", "日本"]


def test_tokens_builder_writes_a_string_tensor_per_step():
    value = only_value(summary.tokens_summary(metadata.TOKENS_TAG, WORDS))
    assert value.tag == "attention/tokens"
    assert value.tensor.dtype == types_pb2.DT_STRING
    assert value.metadata.data_class == summary_pb2.DATA_CLASS_TENSOR
    data = metadata.parse_plugin_data(value.metadata.plugin_data.content)
    assert metadata.kind_name(data) == "tokens" and data.kind == metadata.PluginData.TOKENS
    assert list(data.labels) == []  # tokens change per step: never frozen labels
    stored = tensor_util.make_ndarray(value.tensor)
    metadata.check_values(data, stored)
    assert metadata.decode_token_values(stored) == WORDS


@pytest.mark.parametrize(
    "tokens, error, words",
    [
        ("the cat", TypeError, "not one string"),
        (["a", 3], TypeError, "must be strings"),
        ([], ValueError, "empty"),
        (7, TypeError, "sequence of strings"),
    ],
)
def test_tokens_builder_bad_input_names_the_tag(tokens, error, words):
    with pytest.raises(error, match=words) as info:
        summary.tokens_summary("attention/tokens", tokens)
    assert "attention/tokens" in str(info.value)


def test_tokens_check_refuses_numbers_and_2d():
    data = metadata.parse_plugin_data(metadata.create_summary_metadata("tokens").plugin_data.content)
    with pytest.raises(metadata.ContentError):
        metadata.check_values(data, np.zeros(3))
    with pytest.raises(metadata.ContentError):
        metadata.check_values(data, np.array([[b"a"]], dtype=object))
    assert metadata.decode_token_values(np.array([b"\xff\xfeok", b"x"], dtype=object)) == ["\ufffd\ufffdok", "x"]


def _token_model(vocab):
    """An embedding, one MultiheadAttention, a head: what watch() labels
    (torch imported here: the builder tests above need none)."""
    import torch.nn as nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(vocab, 16)
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.head = nn.Linear(16, vocab)

        def forward(self, ids):
            x = self.emb(ids)
            y, _ = self.attn(x, x, x, need_weights=False)
            return self.head(y)

    return Model()


@pytest.fixture(scope="module")
def tokens_logdir(tmp_path_factory):
    """run "watched": watch(tokens=vocabulary) over 3 logging steps of
    different inputs; run "raw": a tokens step holding bytes that are not
    UTF-8, and one attention step without tokens."""
    import torch
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    from torch_visualization import SummaryWriter

    logdir = tmp_path_factory.mktemp("tokens")
    torch.manual_seed(0)
    model = _token_model(len(WORDS))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    writer = SummaryWriter(str(logdir / "watched"))
    writer.watch(model, optimizer, log_every=1, tokens=WORDS, outputs="none")
    expected = {}
    for step in range(3):
        ids = torch.randint(0, len(WORDS), (2, 6 + step))
        expected[step] = [WORDS[i] for i in ids[0].tolist()]
        optimizer.zero_grad()
        model(ids).pow(2).mean().backward()
        optimizer.step()
    writer.close()

    raw = TorchWriter(str(logdir / "raw"))
    maps = causal_maps(1, 3)
    raw.file_writer.add_summary(summary.attention_summary("attention/a", maps, original_shape=(1, 3, 3)), 0)
    raw.file_writer.add_summary(summary.attention_summary("attention/a", maps, original_shape=(1, 3, 3)), 1)
    bad = summary.tokens_summary(metadata.TOKENS_TAG, ["x", "y", "z"])
    del bad.value[0].tensor.string_val[:]
    bad.value[0].tensor.string_val.extend([b"\xff\xfe", b"ok", b"\xc3\xa9"])
    raw.file_writer.add_summary(bad, 0)
    raw.close()
    # A user's own bars under the tokens tag name are not taken for tokens.
    foreign = TorchWriter(str(logdir / "foreign"))
    foreign.file_writer.add_summary(summary.attention_summary("attention/a", maps, original_shape=(1, 3, 3)), 0)
    foreign.file_writer.add_summary(summary.bars_summary(metadata.TOKENS_TAG, [1.0, 2.0, 3.0]), 0)
    foreign.close()
    return logdir, expected


def check_tokens_served(get, expected):
    status, body = get(PREFIX + "/tags")
    assert status == 200, body
    runs = json.loads(body)["runs"]
    assert runs["watched"]["attention/tokens"]["kind"] == "tokens"
    assert runs["watched"]["attention/tokens"]["labels"] == []
    for step, words in expected.items():
        status, body = get(url("/data", run="watched", tag="attention/tokens", step=step))
        assert status == 200, body
        data = json.loads(body)
        assert data["kind"] == "tokens" and data["values"] == words
        assert data["shape"] == [len(words)] and data["nonfinite"] == 0 and data["steps"] == [0, 1, 2]
        # The attention step carries the tokens of its own step.
        status, body = get(url("/data", run="watched", tag="attention/attn", step=step))
        assert status == 200, body
        data = json.loads(body)
        assert data["tokens"] == words
        assert data["shape"] == [2, len(words), len(words)]
    assert expected[0] != expected[2]
    # Not UTF-8: replaced, never a 500; a step without tokens says null.
    status, body = get(url("/data", run="raw", tag="attention/tokens", step=0))
    assert status == 200, body
    assert json.loads(body)["values"] == ["\ufffd\ufffd", "ok", "é"]
    assert json.loads(get(url("/data", run="raw", tag="attention/a", step=0))[1])["tokens"] == ["\ufffd\ufffd", "ok", "é"]
    assert json.loads(get(url("/data", run="raw", tag="attention/a", step=1))[1])["tokens"] is None
    assert json.loads(get(url("/data", run="foreign", tag="attention/a", step=0))[1])["tokens"] is None
    # Bad queries: typed errors.
    assert get(url("/data", run="watched", tag="attention/tokens", step=9))[0] == 404
    assert get(url("/data", run="watched", tag="attention/tokens", step="x"))[0] == 400
    assert get(url("/data", run="nope", tag="attention/tokens"))[0] == 404
    status, body = get(url("/series", run="watched", tag="attention/tokens"))
    assert status == 400 and b"tokens" in body, body
    status, body = get(url("/csv", run="watched", tag="attention/tokens"))
    assert status == 200, body
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    assert [r["label"] for r in rows if r["step"] == "1"] == expected[1]
    assert {r["stat"] for r in rows} == {"token"} and {r["value"] for r in rows} == {"NaN"}


def test_plugin_serves_tokens_python_loader(tokens_logdir):
    logdir, expected = tokens_logdir
    check_tokens_served(python_loader_get(logdir), expected)


def test_plugin_serves_tokens_rustboard(tokens_logdir):
    logdir, expected = tokens_logdir
    with tensorboard_server(logdir, "--load_fast=true") as server:
        server.wait_for_tags(["watched", "raw", "foreign"])
        check_tokens_served(lambda path: http_get(server.url + path), expected)
