"""NaN, +Inf and -Inf in every chart kind reach the client as they were written.

(Confusion matrices hold counts, which cannot be non-finite.) Both the
per-step /data route and the whole-history /series route are checked.

Written with our `SummaryWriter`, served by both loaders, parsed with a strict
JSON parser (browsers reject bare `NaN`/`Infinity` tokens), decoded with the
plugin's documented string encoding and compared element by element: a
non-finite value must come back in its own cell, never as 0, null or missing,
and the `nonfinite` count must say how many there are.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import numpy as np
import pytest
import torch
from werkzeug.test import Client

from conftest import http_get, make_wsgi_app, tensorboard_server
from torch_visualization import SummaryWriter
from torch_visualization.tb_plugin.encoding import decode_array

PREFIX = "/data/plugin/torch_visualization"
NAN, INF = float("nan"), float("inf")


def _strict_json(body):
    def reject(token):
        raise ValueError("bare %s in JSON: browsers reject it" % token)

    return json.loads(body, parse_constant=reject)


def write_nonfinite_logdir(logdir):
    """Every kind with NaN, +Inf and -Inf; returns `{tag: expected values}`."""
    expected = {}
    with SummaryWriter(str(logdir / "run")) as writer:
        small = torch.tensor([[NAN, 1.0, INF, -2.0], [-INF, 0.0, 3.0, NAN]])
        writer.add_weight_heatmap("heatmap/raw", small, 0)
        expected["heatmap/raw"] = small.numpy().astype(np.float64)

        # Pooled 128x128 -> 64x64: each cell is the mean of a 2x2 block, so a
        # non-finite element makes its cell non-finite (never averaged away).
        big = torch.ones(128, 128)
        big[0, 1], big[3, 2], big[5, 4] = NAN, INF, -INF
        writer.add_weight_heatmap("heatmap/pooled", big, 0)
        pooled = np.ones((64, 64))
        pooled[0, 0], pooled[1, 1], pooled[2, 2] = NAN, INF, -INF
        expected["heatmap/pooled"] = pooled

        pie = np.array([NAN, INF, -INF, 2.0])
        writer.add_class_pie("pie", pie, 0, class_names=["n", "p", "m", "ok"])
        expected["pie"] = pie

        bars = {"nan": NAN, "inf": INF, "-inf": -INF, "ok": 1.5}
        writer.add_gradient_bars("bars/mapping", bars, 0)
        expected["bars/mapping"] = np.array(list(bars.values()))

        model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        model(torch.ones(1, 2)).sum().backward()
        model[0].weight.grad[0, 0] = NAN
        model[1].weight.grad[0, 0] = INF
        writer.add_gradient_bars("bars/module", model, 0)
        expected["bars/module"] = np.array(
            [NAN, model[0].bias.grad.norm().item(), INF, model[1].bias.grad.norm().item()]
        )

        points = torch.tensor([[NAN, 0.0], [INF, -INF], [1.0, 2.0]])
        writer.add_scatter("scatter", points, 0, labels=torch.tensor([0, 1, 0]), class_names=["a", "b"])
        expected["scatter"] = np.array([[NAN, 0, 0], [INF, -INF, 1], [1, 2, 0]])
    return expected


@pytest.fixture(scope="module")
def nonfinite(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("nonfinite")
    return logdir, write_nonfinite_logdir(logdir)


def _url(tag, route="data"):
    return PREFIX + "/%s?" % route + urllib.parse.urlencode({"run": "run", "tag": tag})


# Kinds the /series route serves whole (every step at once).
SERIES_TAGS = ("pie", "bars/mapping", "bars/module")


def _check_series(tag, expected, body):
    (values,) = body["values"]  # one step was logged
    np.testing.assert_array_equal(decode_array(values), expected, err_msg=tag)


def _check(tag, expected, body):
    served = decode_array(body["values"])
    assert served.shape == expected.shape, tag
    # assert_array_equal treats NaN as equal to NaN, and Inf only to same-sign Inf.
    np.testing.assert_array_equal(served, expected.astype(np.float32).astype(np.float64)
                                  if tag.startswith(("heatmap", "scatter")) else expected, err_msg=tag)
    assert body["nonfinite"] == int(np.count_nonzero(~np.isfinite(expected))), tag
    # The wire form itself: the documented strings, in place, no nulls.
    flat = list(np.ravel(np.asarray(body["values"], dtype=object)))
    for position, value in enumerate(np.ravel(expected)):
        if np.isnan(value):
            assert flat[position] == "NaN", (tag, position)
        elif np.isinf(value):
            assert flat[position] == ("Infinity" if value > 0 else "-Infinity"), (tag, position)
        else:
            assert isinstance(flat[position], (int, float)), (tag, position)


def test_python_loader_keeps_nonfinite(nonfinite):
    logdir, expected = nonfinite
    client = Client(make_wsgi_app(logdir))
    for tag, values in expected.items():
        response = client.get(_url(tag))
        assert response.status_code == 200, response.get_data(as_text=True)
        _check(tag, values, _strict_json(response.get_data(as_text=True)))
    for tag in SERIES_TAGS:
        response = client.get(_url(tag, "series"))
        assert response.status_code == 200, response.get_data(as_text=True)
        _check_series(tag, expected[tag], _strict_json(response.get_data(as_text=True)))


def test_rustboard_keeps_nonfinite(nonfinite):
    logdir, expected = nonfinite
    with tensorboard_server(logdir, "--load_fast=true") as server:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = server.wait_for_tags(["run"])["runs"]["run"]
            if set(expected) <= set(listed):
                break
            time.sleep(0.5)
        for tag, values in expected.items():
            status, body = http_get(server.url + _url(tag))
            assert status == 200, body
            _check(tag, values, _strict_json(body))
        for tag in SERIES_TAGS:
            status, body = http_get(server.url + _url(tag, "series"))
            assert status == 200, body
            _check_series(tag, expected[tag], _strict_json(body))
