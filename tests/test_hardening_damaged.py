"""Damaged logs: the intact data is still served, bad records are skipped.

Event files are written with TensorBoard's own record writer
(`tensorboard.summary.writer.record_writer.RecordWriter`, the TFRecord framing
with masked CRC32C) and then damaged byte by byte: a file cut mid-record, a
flipped byte under a data CRC and under a length CRC, plugin content that does
not parse, content from a newer version, content naming no known kind,
tensors whose shape disagrees with the tag's metadata, a tensor of strings,
and a TensorProto whose bytes disagree with its own shape.

Both loaders read them: TensorBoard's WSGI app with the Python loader (its
warnings are checked with caplog) and a real `--load_fast=true` subprocess
(its log file is checked). What each loader recovers from framing damage is
TensorBoard's business (we never parse files); the tests pin what we rely on:
everything before the damage and everything in later files is served, nothing
that was damaged comes back, and nothing answers 500.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.parse

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util
from werkzeug.test import Client

from conftest import http_get, make_wsgi_app, tensorboard_server
from torch_visualization import metadata, summary

PREFIX = "/data/plugin/torch_visualization"
NAMES = ["a", "b", "c"]
PLUGIN_LOGGER = "torch_visualization.tb_plugin.plugin"


# -- writing (and damaging) event files -----------------------------------------

def _event(step, value_summary):
    event = event_pb2.Event(wall_time=1000.0 + step, step=step)
    event.summary.CopyFrom(value_summary)
    return event


def _write_events(path, events):
    """Writes a version event plus `events`; returns each record's byte offset."""
    offsets = []
    with open(path, "wb") as f:
        writer = RecordWriter(f)
        for event in [event_pb2.Event(wall_time=999.0, file_version="brain.Event:2")] + events:
            offsets.append(f.tell())
            writer.write(event.SerializeToString())
        offsets.append(f.tell())
    return offsets


def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))


def _pie(step, tag="p"):
    return summary.pie_summary(tag, np.array([step + 1.0, 2.0, 3.0]), class_names=NAMES)


def _with_content(value_summary, content):
    value_summary.value[0].metadata.plugin_data.content = content
    return value_summary


def _with_tensor(value_summary, array):
    value_summary.value[0].tensor.CopyFrom(tensor_util.make_tensor_proto(array))
    return value_summary


def _file(logdir, run, index):
    folder = os.path.join(logdir, run)
    os.makedirs(folder, exist_ok=True)
    # Names sort by time as TensorBoard's writer names them: a later file is
    # a restarted job.
    return os.path.join(folder, "events.out.tfevents.%d.host.%d.0" % (1000 + index, index))


# Record header: uint64 length + uint32 masked CRC of the length; data follows.
_HEADER = 12


def write_damaged_logdir(logdir):
    """Writes one run per kind of damage; returns what must and may be served.

    Returns:
      `{(run, tag): (required steps, allowed steps)}`: the served steps must
      include `required` and stay within `allowed`.
    """
    expect = {}
    pies = lambda steps: [_event(s, _pie(s)) for s in steps]  # noqa: E731

    _write_events(_file(logdir, "intact", 0), pies(range(5)))
    expect["intact", "p"] = ({0, 1, 2, 3, 4},) * 2

    # A job killed mid-write, then restarted into a new file.
    path = _file(logdir, "truncated", 0)
    offsets = _write_events(path, pies(range(6)))
    os.truncate(path, (offsets[-2] + offsets[-1]) // 2)
    _write_events(_file(logdir, "truncated", 1), pies(range(6, 9)))
    expect["truncated", "p"] = ({0, 1, 2, 3, 4, 6, 7, 8},) * 2

    # A flipped byte inside step 2's data (its data CRC no longer matches).
    # The Python loader stops reading that file there; RustBoard does not
    # check data CRCs and reads on. Both read the later file.
    path = _file(logdir, "badcrc", 0)
    offsets = _write_events(path, pies(range(6)))
    _flip_byte(path, offsets[3] + _HEADER + 5)  # inside the wall_time double
    _write_events(_file(logdir, "badcrc", 1), pies(range(10, 13)))
    expect["badcrc", "p"] = ({0, 1, 10, 11, 12}, {0, 1, 2, 3, 4, 5, 10, 11, 12})

    # A flipped byte in step 2's length: no loader can trust what follows.
    path = _file(logdir, "badlencrc", 0)
    offsets = _write_events(path, pies(range(6)))
    _flip_byte(path, offsets[3] + 1)
    _write_events(_file(logdir, "badlencrc", 1), pies(range(20, 22)))
    expect["badlencrc", "p"] = ({0, 1, 20, 21},) * 2

    # Our plugin name with content this version cannot read: the tag is left
    # out (TensorBoard keeps only a tag's first metadata, so it is per tag).
    two = np.array([1.0, 2.0])
    newer = metadata.PluginData(version=metadata.PROTO_VERSION + 1, kind=metadata.PluginData.PIE)
    unknown_kind = metadata.PluginData(version=metadata.PROTO_VERSION, kind=99)
    _write_events(
        _file(logdir, "badcontent", 0),
        [
            _event(0, _with_content(summary.pie_summary("garbage", two), b"\xff\xff\xff\x07")),
            _event(0, _with_content(summary.pie_summary("newer", two), newer.SerializeToString())),
            _event(0, _with_content(summary.pie_summary("nokind", two), unknown_kind.SerializeToString())),
        ]
        + pies(range(3)),
    )
    expect["badcontent", "p"] = ({0, 1, 2},) * 2

    # Records whose tensor disagrees with the tag's metadata: skipped one by one.
    events = []
    for s in range(5):
        events.append(_event(s, _with_tensor(_pie(s), np.arange(4.0)) if s == 3 else _pie(s)))
        strings = _with_tensor(_pie(s, "st"), np.array([b"a", b"b", b"c"]))
        events.append(_event(s, strings if s == 1 else _pie(s, "st")))
        grid = np.ones((2, 3), np.float32)
        heatmap = summary.heatmap_summary("h", grid, original_shape=(2, 3))
        events.append(_event(s, _with_tensor(heatmap, grid.ravel()) if s == 2 else heatmap))
        points = summary.scatter_summary("sc", np.zeros((4, 2)))
        events.append(_event(s, _with_tensor(points, np.zeros((4, 2))) if s == 0 else points))
        # A TensorProto whose bytes disagree with its own shape: both data
        # providers fail on the whole tag, which must then be a 404, not a 500.
        proto = _pie(s, "bp")
        if s == 1:
            proto.value[0].tensor.tensor_content = proto.value[0].tensor.tensor_content[:8]
        events.append(_event(s, proto))
    _write_events(_file(logdir, "badshape", 0), events)
    expect["badshape", "p"] = ({0, 1, 2, 4},) * 2
    expect["badshape", "st"] = ({0, 2, 3, 4},) * 2
    expect["badshape", "h"] = ({0, 1, 3, 4},) * 2
    expect["badshape", "sc"] = ({1, 2, 3, 4},) * 2
    return expect


# What each unreadable tag must answer, and the warning it must log.
UNREADABLE = {
    ("badcontent", "garbage"): ("cannot be read by this version", "unparseable plugin content"),
    ("badcontent", "newer"): ("cannot be read by this version", "is newer than this reader"),
    ("badcontent", "nokind"): ("cannot be read by this version", "no known chart kind"),
    ("badshape", "bp"): ("cannot be decoded", "cannot decode run 'badshape' tag 'bp'"),
}
SKIPPED_RECORD_WARNINGS = [
    "skipping run 'badshape' tag 'p' step 3",
    "skipping run 'badshape' tag 'st' step 1",
    "skipping run 'badshape' tag 'h' step 2",
    "skipping run 'badshape' tag 'sc' step 0",
]
ALL_RUNS = {"intact", "truncated", "badcrc", "badlencrc", "badcontent", "badshape"}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("damaged") / "logs"
    logdir.mkdir()
    expect = write_damaged_logdir(str(logdir))
    return str(logdir), expect


def _data_url(run, tag):
    return PREFIX + "/data?" + urllib.parse.urlencode({"run": run, "tag": tag})


def _check_listing(tags):
    assert set(tags["runs"]) == ALL_RUNS
    # Unreadable tags are left out; the readable tag beside them is listed.
    assert set(tags["runs"]["badcontent"]) == {"p"}
    assert set(tags["runs"]["badshape"]) == {"p", "st", "h", "sc", "bp"}


def _check_served(expect, get):
    """`get(url) -> (status, body)`; checks every tag's served steps and values."""
    for (run, tag), (required, allowed) in expect.items():
        status, body = get(_data_url(run, tag))
        assert status == 200, (run, tag, status, body)
        steps = set(body["steps"])
        assert required <= steps <= allowed, (run, tag, sorted(steps))
        if tag == "p":
            # An intact record's values come back exactly.
            step = min(required)
            status, body = get(_data_url(run, tag) + "&step=%d" % step)
            assert body["values"] == [step + 1.0, 2.0, 3.0]
    for (run, tag), (message, _) in UNREADABLE.items():
        status, body = get(_data_url(run, tag))
        assert status == 404, (run, tag, status)
        assert message in body


# -- the Python loader ---------------------------------------------------------

def test_python_loader_serves_intact_data_and_warns(damaged, caplog):
    logdir, expect = damaged
    with caplog.at_level(logging.WARNING):
        client = Client(make_wsgi_app(logdir))

        def get(url):
            response = client.get(url)
            if response.status_code == 200:
                return 200, response.json
            return response.status_code, response.get_data(as_text=True)

        status, tags = get(PREFIX + "/tags")
        assert status == 200
        _check_listing(tags)
        _check_served(expect, get)
        # The tab itself still loads.
        assert client.get(PREFIX + "/index.js").status_code == 200
        assert get("/data/plugins_listing")[1]["torch_visualization"]["enabled"]

    ours = [r.getMessage() for r in caplog.records if r.name == PLUGIN_LOGGER]
    for _, warning in UNREADABLE.values():
        assert any(warning in m for m in ours), (warning, ours)
    for warning in SKIPPED_RECORD_WARNINGS:
        assert any(warning in m for m in ours), (warning, ours)
    # Logged once per bad record, not once per request.
    assert len(ours) == len(set(ours)), ours


def test_bad_records_are_logged_once_across_requests(damaged, caplog):
    logdir, _ = damaged
    client = Client(make_wsgi_app(logdir))
    with caplog.at_level(logging.WARNING, logger=PLUGIN_LOGGER):
        for _ in range(3):
            assert client.get(_data_url("badshape", "p")).status_code == 200
    skipped = [r for r in caplog.records if "tag 'p' step 3" in r.getMessage()]
    assert len(skipped) == 1


def test_read_api_skips_damage(damaged, caplog):
    """`torch_visualization.read` (Python loader) skips the same records."""
    from torch_visualization import read

    logdir, expect = damaged
    with caplog.at_level(logging.WARNING):
        data = read(logdir)
    for (run, tag), (required, allowed) in expect.items():
        assert required <= set(data[run][tag].steps) <= allowed, (run, tag)
    assert set(data["badcontent"]) == {"p"}
    assert "bp" not in data["badshape"] or 1 not in data["badshape"]["bp"].steps
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "skipping run 'badshape' tag 'p' step 3" in messages


# -- RustBoard ------------------------------------------------------------------

def test_rustboard_serves_intact_data_and_warns(damaged):
    logdir, expect = damaged
    with tensorboard_server(logdir, "--load_fast=true") as server:
        server.wait_for_tags(ALL_RUNS)

        def get(url):
            status, body = http_get(server.url + url)
            if status == 200:
                return 200, json.loads(body)
            return status, body.decode("utf-8", "replace")

        # RustBoard loads incrementally: wait until the last file of each run is in.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(
                required <= set(get(_data_url(run, tag))[1].get("steps", ()))
                for (run, tag), (required, _) in expect.items()
            ):
                break
            time.sleep(0.5)
        _check_listing(get(PREFIX + "/tags")[1])
        _check_served(expect, get)
        assert http_get(server.url + PREFIX + "/index.js")[0] == 200
        assert server.process.poll() is None
    with open(server.log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    for _, warning in UNREADABLE.values():
        assert warning in log, warning
    for warning in SKIPPED_RECORD_WARNINGS:
        assert warning in log, warning
    assert "Traceback" not in log
    # RustBoard reports the framing damage it can see.
    assert "BadLengthCrc" in log
