"""Fuzzed routes: thousands of random and malformed requests, never a 5xx.

Routes: /tags, /data, /series and the static files.

Requests go through TensorBoard's real WSGI app (Python loader) with werkzeug's
test client, built from raw WSGI environs so that nothing in the test client
normalises the hostile parts away: `PATH_INFO` is any byte string decoded as
Latin-1 (what a WSGI server hands over after percent-decoding) and
`QUERY_STRING` is any raw query, invalid percent-escapes included. A smaller
round goes over real HTTP to a `--load_fast=true` server, whose data provider
(gRPC to RustBoard) has error paths of its own.

Every answer must be 2xx, or 4xx with a non-empty message; no 5xx, no
traceback text. An exception escaping the app is what a real server turns
into a 500, so it fails the test too.
"""

from __future__ import annotations

import collections
import http.client
import os
import re
import socket
import urllib.parse

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client, EnvironBuilder
from werkzeug.wrappers import Request

from conftest import make_wsgi_app, tensorboard_server

PREFIX = "/data/plugin/torch_visualization"
RUNS = ["alpha", "<img src=x onerror=alert(1)>", "ünï códe ✓"]
TAGS = ["outputs/classes", "weights/w", "gradients/norm", "features/pca", "outputs/confusion", "loss"]
# Examples per route; each example sends one request. The totals are
# asserted below, so lowering these is visible.
EXAMPLES = {"data": 2000, "series": 800, "static": 1500, "tags": 900}
MIN_TOTAL_QUERIES = 5000
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File "[^"]*", line \d+')

_sent = {"wsgi": 0}
_statuses = collections.Counter()


def _write_logdir(logdir):
    """A small logdir with every chart kind, in runs with awkward names."""
    import torch

    from torch_visualization import SummaryWriter

    torch.manual_seed(0)
    for run in RUNS:
        with SummaryWriter(os.path.join(logdir, run)) as writer:
            model = torch.nn.Linear(3, 2)
            model(torch.randn(4, 3)).sum().backward()
            for step in (0, 1, 5):
                writer.add_class_pie("outputs/classes", np.array([1.0, step, 3.0]), step,
                                     class_names=["a", "b", "c"])
                writer.add_weight_heatmap("weights/w", torch.randn(4, 6), step)
                writer.add_gradient_bars("gradients/norm", model, step)
                writer.add_scatter("features/pca", torch.randn(5, 2), step)
                writer.add_confusion_matrix("outputs/confusion", torch.tensor([0, 1, 2, 1]),
                                            torch.tensor([0, 1, 1, 2]), step, class_names=["a", "b", "c"])
                writer.add_scalar("loss", 1.0 / (step + 1), step)


@pytest.fixture(scope="module")
def fuzz_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("fuzz")
    _write_logdir(str(logdir))
    return str(logdir)


@pytest.fixture(scope="module")
def client(fuzz_logdir):
    return Client(make_wsgi_app(fuzz_logdir))


# -- strategies ----------------------------------------------------------------

def _quote(text):
    return urllib.parse.quote(text, safe="")


# Pieces of values worth trying: real names, traversal, escapes, numbers of
# every shape `int()` might accept or choke on.
_TRICKY = [
    "", " ", "..", "../", "..%2f", "%2e%2e", "%2e%2e%2f", "%252e%252e%252f", "%00", "%",
    "%zz", "%c3%28", "%ff%fe", "%ed%a0%80", "+", "%20", "\\..\\", "//", "/etc/passwd",
    "index.js", "views/pie.js", "style.css", "0", "-1", "-0", "00", "1e3", "0x10", "1_000",
    "1.5", "NaN", "inf", "9" * 19, "9" * 20, "-" + "9" * 19, str(2**63), str(-(2**63)),
    " 5 ", "\t5", "\u00a05", "\u0663", "５", "\x1c5", "5\n", "0%1F", "0\x1f", "true", "null", "[]", "{}",
    "<script>alert(1)</script>", "\"'><img src=x>", "\u202e\u05e9\u05dc\u05d5\u05dd", "😀" * 3,
] + RUNS + TAGS


def _encoded(text_strategy):
    """Text percent-encoded the normal way, or left raw (hostile clients)."""
    return st.one_of(text_strategy.map(_quote), text_strategy)


def _utf8(strategy):
    return strategy.map(lambda s: s.encode("utf-8"))


# Queries and paths are built as bytes, as they travel on the wire: text is
# sent as UTF-8, and raw bytes (invalid UTF-8 included) are sent as they are.
_value = st.one_of(
    _utf8(st.sampled_from(_TRICKY)),
    _utf8(_encoded(st.text(max_size=40))),
    st.binary(max_size=20),
    _utf8(st.integers(min_value=-(2**70), max_value=2**70).map(str)),
    _utf8(st.text(alphabet="%0123456789abcdefABCDEF+&=;#?/.", max_size=30)),
    st.integers(min_value=1, max_value=40_000).map(lambda n: b"x" * n),  # huge values
)
_key = st.one_of(
    _utf8(st.sampled_from(["run", "tag", "step", "Run", "run[]", "step ", "", "experiment"])),
    _utf8(_encoded(st.text(max_size=10))),
    st.binary(max_size=6),
)
_pair = st.one_of(
    st.tuples(_key, _value).map(lambda kv: kv[0] + b"=" + kv[1]),
    _key,  # a key with no "="
    st.sampled_from([b"run=alpha", b"tag=weights/w", b"tag=outputs%2Fclasses", b"step=5", b"step=1"]),
)
_random_query = st.lists(_pair, max_size=8).flatmap(
    lambda pairs: st.sampled_from([b"&", b";", b"&&"]).map(lambda sep: sep.join(pairs))
)
# Real run and tag, properly encoded, with a step that may or may not exist:
# reaches the code behind the parameter checks (lookups, steps, encoding).
_near_valid_query = st.tuples(
    st.sampled_from(RUNS), st.sampled_from(TAGS),
    st.one_of(st.none(), st.sampled_from(["0", "1", "5", "2", "-1", "99"]), st.text(max_size=5)),
).map(lambda rts: urllib.parse.urlencode(
    {"run": rts[0], "tag": rts[1], **({} if rts[2] is None else {"step": rts[2]})}).encode())
_query = st.one_of(_random_query, _near_valid_query)

_segment = st.one_of(
    _utf8(st.sampled_from(_TRICKY)),
    _utf8(st.text(alphabet="abcjs./\\%-_~:", max_size=20)),
    _utf8(st.text(max_size=10)),
    st.binary(max_size=20),
    st.integers(min_value=200, max_value=5000).map(lambda n: b"a" * n + b".js"),
)
# The path after the server percent-decoded it, as bytes.
_static_path = st.lists(_segment, min_size=1, max_size=6).map(
    lambda parts: PREFIX.encode() + b"/" + b"/".join(parts)
)
_experiment = st.sampled_from([b"", b"/experiment/x", b"/experiment/..", b"/experiment/%2e", b"/experiment/"])


def _environ(path, query):
    """A WSGI environ as a server builds it: bytes decoded as Latin-1 (PEP 3333)."""
    environ = EnvironBuilder(path="/").get_environ()
    environ["PATH_INFO"] = path.decode("latin-1")
    environ["QUERY_STRING"] = query.decode("latin-1")
    return environ


def _check(status, body, what):
    text = body.decode("utf-8", "replace")
    assert status < 500, "%s answered %d: %s" % (what, status, text[:500])
    assert 200 <= status < 500, "%s answered %d" % (what, status)
    if status >= 400:
        assert text.strip(), "%s answered %d with an empty body" % (what, status)
    assert not TRACEBACK.search(text), "%s leaked a traceback: %s" % (what, text[:500])


def _send(client, path, query):
    response = client.open(Request(_environ(path, query)), buffered=True)
    _sent["wsgi"] += 1
    _statuses[response.status_code] += 1
    _check(response.status_code, response.get_data(), "%r?%r" % (path[:200], query[:200]))
    return response


_SETTINGS = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))


# -- the fuzzed routes ---------------------------------------------------------

def test_fuzz_data_route(client):
    @settings(max_examples=EXAMPLES["data"], **_SETTINGS)
    @given(experiment=_experiment, query=_query)
    def fuzz(experiment, query):
        _send(client, experiment + PREFIX.encode() + b"/data", query)

    fuzz()


def test_fuzz_series_route(client):
    @settings(max_examples=EXAMPLES["series"], **_SETTINGS)
    @given(experiment=_experiment, query=_query)
    def fuzz(experiment, query):
        _send(client, experiment + PREFIX.encode() + b"/series", query)

    fuzz()


def test_fuzz_static_route(client):
    @settings(max_examples=EXAMPLES["static"], **_SETTINGS)
    @given(path=_static_path, query=_query)
    def fuzz(path, query):
        response = _send(client, path, query)
        if response.status_code == 200:
            # Only our own .js/.css files may come back, never anything else.
            name = path[len(PREFIX) + 1:]
            assert re.fullmatch(rb"[A-Za-z0-9_/-]+\.(js|css)", name), name
            assert response.headers["Content-Type"].startswith(("text/javascript", "text/css"))

    fuzz()


def test_fuzz_tags_route(client):
    @settings(max_examples=EXAMPLES["tags"], **_SETTINGS)
    @given(experiment=_experiment, query=_query, slash=st.sampled_from([b"", b"/"]))
    def fuzz(experiment, query, slash):
        response = _send(client, experiment + PREFIX.encode() + b"/tags" + slash, query)
        assert response.status_code == 200  # the tags route takes no parameters

    fuzz()


def test_fuzz_total_query_count():
    # Runs after the fuzz tests above it (pytest keeps file order).
    assert _sent["wsgi"] >= MIN_TOTAL_QUERIES, _sent
    # The fuzzing reached every kind of answer, not only the 400 of a
    # missing parameter.
    assert {200, 400, 404} <= set(_statuses), _statuses
    print("\nfuzzed %d WSGI requests: %s" % (_sent["wsgi"], dict(sorted(_statuses.items()))))


def test_hostile_names_round_trip(client):
    """Awkward run names work as real keys, not just as noise."""
    for run in RUNS:
        query = urllib.parse.urlencode({"run": run, "tag": "weights/w", "step": "5"}).encode()
        response = _send(client, PREFIX.encode() + b"/data", query)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.json["run"] == run


# -- the same over real HTTP, RustBoard ---------------------------------------

def _raw_get(port, target):
    """Sends `GET <target bytes>` as is (no client-side quoting), reads the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def _wire(data):
    # Whitespace and control bytes would end the request line early; they
    # travel percent-encoded. Bytes >= 0x80 stay raw, as hostile clients send them.
    return re.sub(rb"[\x00-\x20\x7f]", lambda m: b"%%%02X" % m.group()[0], data)


RUSTBOARD_EXAMPLES = 400


def test_fuzz_rustboard_over_http(fuzz_logdir):
    with tensorboard_server(fuzz_logdir, "--load_fast=true") as server:
        server.wait_for_tags(RUNS)
        sent = [0]

        @settings(max_examples=RUSTBOARD_EXAMPLES, **_SETTINGS)
        @given(
            target=st.one_of(
                _query.map(lambda q: PREFIX.encode() + b"/data?" + q),
                _query.map(lambda q: PREFIX.encode() + b"/series?" + q),
                _static_path.map(lambda p: urllib.parse.quote_from_bytes(p, safe="/").encode()),
            )
        )
        def fuzz(target):
            target = _wire(target)[:60_000]  # http.server's request-line limit is 64 kB
            status, body = _raw_get(server.port, target)
            sent[0] += 1
            _check(status, body, target[:200])

        fuzz()
        assert sent[0] >= RUSTBOARD_EXAMPLES
        assert server.process.poll() is None, "tensorboard died under fuzzing"
