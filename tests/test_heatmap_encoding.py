"""Heatmap steps stored as float16 with an exact range row (issue 11).

A 64x64 heatmap step must take at most 10 KB (16.5 KB as float32). Steps
whose values fit are stored as float16 `[rows + 1, cols]` (cells scaled by a
power of two, then a row with the exact float32 min and max of the finite
cells; layout in adapter/plugin_data.proto); others stay float32. Every
reader decodes: the plugin through both of TensorBoard's loaders (/data with
its exact `range`, /csv), `read()`, and the tab's card header. Logs written
before (float32, PluginData version 1) read exactly as before.

Event files are written with TensorBoard's public `EventFileWriter` from
`summary.heatmap_summary` (what the writer logs), the first event of a tag
carrying the metadata and later ones none, as the writer does.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
import urllib.parse

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, types_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util
from werkzeug.test import Client

from conftest import make_wsgi_app, tensorboard_server
from torch_visualization import metadata, summary
from torch_visualization.reader import read
from torch_visualization.tb_plugin.encoding import decode_array

PREFIX = "/data/plugin/torch_visualization"
NAN, INF = float("nan"), float("inf")
TEN_KB = 10_000
# TFRecord framing around each event: length, its CRC, the data's CRC.
RECORD_FRAMING = 8 + 4 + 4
# float16 keeps 11 significant bits: round to nearest is within 2**-11.
F16_RELATIVE = 2.0**-11


def weight_like_grid(seed, scale=2e-3, shape=(64, 64)):
    """A mean-pooled weight: values around `scale`, some cells near 0."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def heatmap_event(tag, step, grid, *, first):
    proto = summary.heatmap_summary(tag, grid, original_shape=grid.shape, reduction="mean_pool")
    if not first:
        # TensorBoard keeps the first event's metadata only; the writer sends it once.
        proto.value[0].ClearField("metadata")
    return event_pb2.Event(step=step, wall_time=1_700_000_000.0 + step, summary=proto)


def version1_event(tag, step, grid, *, first):
    """An event as torch-visualization wrote it before float16 steps existed."""
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_util.make_tensor_proto(grid))
    if first:
        content = metadata.PluginData(
            version=1, kind=metadata.PluginData.HEATMAP, original_shape=list(grid.shape), reduction="none"
        )
        value.metadata.CopyFrom(
            summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(
                    plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
                ),
                data_class=summary_pb2.DATA_CLASS_TENSOR,
            )
        )
    return event_pb2.Event(step=step, wall_time=1_700_000_000.0 + step, summary=summary_pb2.Summary(value=[value]))


def write_events(run_dir, events, order):
    """Writes one event file; `order` sorts the run's files by name."""
    os.makedirs(run_dir, exist_ok=True)
    writer = EventFileWriter(str(run_dir))
    for event in events:
        writer.add_event(event)
    writer.close()
    (path,) = [p for p in os.listdir(run_dir) if "tfevents" in p and not p.endswith(".test")]
    name = "events.out.tfevents.%d.order%d.test" % (1_700_000_000 + order, order)
    os.rename(os.path.join(run_dir, path), os.path.join(run_dir, name))


def round_trip(grid):
    return metadata.decode_heatmap_values(metadata.encode_heatmap_grid(grid))


def assert_float16_faithful(decoded, original):
    """Non-finite cells exact; finite cells within float16's precision."""
    original = np.asarray(original, dtype=np.float32)
    assert decoded.dtype == np.float32 and decoded.shape == original.shape
    finite = np.isfinite(original)
    np.testing.assert_array_equal(decoded[~finite], original[~finite])
    np.testing.assert_array_equal(np.isnan(decoded), np.isnan(original))
    error = np.abs(decoded[finite].astype(np.float64) - original[finite])
    assert (error <= F16_RELATIVE * np.abs(original[finite].astype(np.float64))).all()


def exact_range(grid):
    cells = np.asarray(grid, dtype=np.float32)
    cells = cells[np.isfinite(cells)]
    return None if cells.size == 0 else [float(cells.min()), float(cells.max())]


# -- size -------------------------------------------------------------------


def test_a_64x64_step_is_at_most_10_kb():
    grid = weight_like_grid(0)
    first = heatmap_event("weights/fc1", 0, grid, first=True)
    later = heatmap_event("weights/fc1", 1, weight_like_grid(1), first=False)
    value = later.summary.value[0]
    assert value.tensor.dtype == types_pb2.DT_HALF
    assert [d.size for d in value.tensor.tensor_shape.dim] == [65, 64]
    assert not value.HasField("metadata")
    print("\n64x64 heatmap: first event %d B, later event %d B, later Summary.Value %d B"
          % (first.ByteSize(), later.ByteSize(), value.ByteSize()))
    assert value.ByteSize() <= TEN_KB
    assert later.ByteSize() + RECORD_FRAMING <= TEN_KB
    assert first.ByteSize() + RECORD_FRAMING <= TEN_KB
    # The same grid as float32 (what version 1 stored) does not fit.
    assert tensor_util.make_tensor_proto(grid).ByteSize() > 16_000


def test_event_file_grows_by_at_most_10_kb_per_step(tmp_path):
    def file_size(steps):
        run = tmp_path / ("run%d" % steps)
        write_events(run, [heatmap_event("w", s, weight_like_grid(s), first=s == 0) for s in range(steps)], 0)
        return sum(p.stat().st_size for p in run.iterdir())

    one, twenty_one = file_size(1), file_size(21)
    assert one <= TEN_KB + 200  # the file's first event plus file-version framing
    assert (twenty_one - one) / 20 <= TEN_KB


# -- the encoding itself ------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-6, 2e-3, 1.0, 300.0, 1e6, 3e37])
def test_round_trip_keeps_nonfinite_and_the_exact_range(scale):
    grid = weight_like_grid(2, scale=scale, shape=(9, 7))
    grid[0, 0], grid[1, 1], grid[2, 2], grid[3, 3] = NAN, INF, -INF, 0.0
    encoded = metadata.encode_heatmap_grid(grid)
    assert encoded.dtype == np.float16 and encoded.shape == (10, 7)
    decoded, value_range = metadata.decode_heatmap_values(encoded)
    assert_float16_faithful(decoded, grid)
    assert decoded[3, 3] == 0.0
    assert list(value_range) == exact_range(grid)
    # The range is the float32 extremes themselves, not their float16 cells.
    finite = grid[np.isfinite(grid)]
    assert value_range == (float(finite.min()), float(finite.max()))
    assert not np.array_equal(decoded[np.isfinite(grid)], finite)


def test_range_row_layout_as_documented():
    grid = np.array([[0.5, -0.25, 2.0, 1.0], [NAN, 0.75, INF, 0.125]], dtype=np.float32)
    encoded = metadata.encode_heatmap_grid(grid)
    halves = encoded[-1].view(np.uint16)
    bits = np.array([-0.25, 2.0], dtype="<f4").view("<u4")
    assert halves[0] == bits[0] & 0xFFFF and halves[1] == bits[0] >> 16
    assert halves[2] == bits[1] & 0xFFFF and halves[3] == bits[1] >> 16
    # max |cell| = 2 = 0.5 * 2**2: cells are scaled by 2**(15 - 2).
    np.testing.assert_array_equal(encoded[:2, :2], [[0.5 * 2**13, -0.25 * 2**13], [NAN, 0.75 * 2**13]])


def test_weight_sized_values_with_cells_near_zero_fit():
    # Pooled weights are ~1e-3 with some cells far closer to 0; unscaled
    # float16 would flush those below 2**-14 and fall back to float32.
    grid = weight_like_grid(3)
    grid[5, 5], grid[6, 6] = 3e-9, -1e-10
    decoded, value_range = round_trip(grid)
    assert metadata.encode_heatmap_grid(grid).dtype == np.float16
    assert_float16_faithful(decoded, grid)
    assert list(value_range) == exact_range(grid)


@pytest.mark.parametrize(
    "name, grid",
    [
        ("1e-9 beside 1", np.array([[1.0, 1e-9, 0.5, 0.25]] * 3, dtype=np.float32)),
        ("1e6 beside 1e-4", np.array([[1e6, 1e-4, 1.0, 2.0]] * 3, dtype=np.float32)),
        ("float32 subnormals", np.array([[1e-39, 5e-40, 0.0, 1e-39]] * 2, dtype=np.float32)),
        ("fewer than 4 columns", np.array([[0.5, NAN, 0.25]] * 4, dtype=np.float32)),
    ],
)
def test_values_that_do_not_fit_stay_float32(name, grid):
    encoded = metadata.encode_heatmap_grid(grid)
    assert encoded.dtype == np.float32, name
    assert encoded.tobytes() == grid.tobytes(), name
    decoded, value_range = metadata.decode_heatmap_values(encoded)
    assert decoded.tobytes() == grid.tobytes(), name
    assert list(value_range) == exact_range(grid), name


def test_grids_without_finite_cells_and_all_zero_grids():
    nonfinite = np.array([[NAN, INF, -INF, NAN]] * 2, dtype=np.float32)
    encoded = metadata.encode_heatmap_grid(nonfinite)
    assert encoded.dtype == np.float16
    decoded, value_range = metadata.decode_heatmap_values(encoded)
    assert value_range is None
    np.testing.assert_array_equal(decoded, nonfinite)
    zeros = np.zeros((3, 5), dtype=np.float32)
    decoded, value_range = round_trip(zeros)
    assert value_range == (0.0, 0.0)
    np.testing.assert_array_equal(decoded, zeros)


def test_encode_rejects_what_is_no_grid():
    with pytest.raises(ValueError, match="2-D"):
        metadata.encode_heatmap_grid(np.zeros(5, np.float32))
    with pytest.raises(TypeError, match="real numbers"):
        metadata.encode_heatmap_grid(np.zeros((2, 4), np.complex64))


def _damaged(kind):
    encoded = metadata.encode_heatmap_grid(weight_like_grid(4, shape=(3, 6)))
    if kind == "reserved entries":
        encoded[-1, 5] = 1.0
    elif kind == "min above max":
        encoded[-1, :4] = np.array([2.0, 1.0], dtype="<f4").view("<u2").view(np.float16)
    elif kind == "one row":
        encoded = encoded[-1:]
    elif kind == "three columns":
        encoded = np.zeros((4, 3), dtype=np.float16)
    return encoded


@pytest.mark.parametrize("kind", ["reserved entries", "min above max", "one row", "three columns"])
def test_malformed_float16_steps_are_content_errors(kind):
    with pytest.raises(metadata.ContentError):
        metadata.decode_heatmap_values(_damaged(kind))


def test_check_values_knows_the_float16_shape():
    data = metadata.parse_plugin_data(
        metadata.create_summary_metadata("heatmap", encoding="FLOAT16_RANGE_ROW").plugin_data.content
    )
    assert data.encoding == metadata.PluginData.FLOAT16_RANGE_ROW
    metadata.check_values(data, metadata.encode_heatmap_grid(weight_like_grid(5, shape=(2, 4))))
    for kind in ("one row", "three columns", "reserved entries"):
        with pytest.raises(metadata.ContentError):
            metadata.check_values(data, _damaged(kind))


def test_create_summary_metadata_encoding_argument():
    def encoding_of(md):
        return metadata.parse_plugin_data(md.plugin_data.content).encoding

    assert encoding_of(metadata.create_summary_metadata("pie")) == metadata.PluginData.FLOAT32
    assert encoding_of(
        metadata.create_summary_metadata("heatmap", encoding=metadata.PluginData.FLOAT16_RANGE_ROW)
    ) == metadata.PluginData.FLOAT16_RANGE_ROW
    with pytest.raises(ValueError, match="unknown heatmap encoding"):
        metadata.create_summary_metadata("heatmap", encoding="FLOAT64")
    with pytest.raises(ValueError, match="unknown heatmap encoding"):
        metadata.create_summary_metadata("heatmap", encoding=7)
    with pytest.raises(ValueError, match="for heatmaps, not pie"):
        metadata.create_summary_metadata("pie", encoding=metadata.PluginData.FLOAT16_RANGE_ROW)


def test_heatmap_summary_marks_the_tag_float16():
    proto = summary.heatmap_summary("w", weight_like_grid(6), original_shape=(64, 64))
    data = metadata.parse_plugin_data(proto.value[0].metadata.plugin_data.content)
    assert data.version == metadata.PROTO_VERSION == 2
    assert data.encoding == metadata.PluginData.FLOAT16_RANGE_ROW
    # Raw bytes, not one varint per element in half_val.
    assert proto.value[0].tensor.tensor_content and not proto.value[0].tensor.half_val


# -- through TensorBoard's loaders, read() and the CSV export --------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Runs of float16, mixed, version-1, resumed and damaged heatmaps.

    Returns:
      `(logdir, {run: {tag: {step: (original float32 grid or None, stored dtype)}}})`;
      None marks a step that must be skipped.
    """
    logdir = tmp_path_factory.mktemp("heatmap_encoding")
    expected = {}

    grids = {s: weight_like_grid(10 + s) for s in range(6)}
    grids[2][0, 0], grids[2][1, 1], grids[2][2, 2] = NAN, INF, -INF
    grids[5][0, 0], grids[5][0, 1] = 1e6, 1e-4  # does not fit: float32 in the same tag
    small = {s: np.array([[0.1 * s, -0.2], [NAN, 0.3]], dtype=np.float32) for s in range(2)}
    # A range whose 16-bit halves read as float16 NaN and -Inf patterns: the
    # loaders must carry the range row's bits untouched.
    low, high = np.array([0xFC00FE00, 0x7C017C01], dtype="<u4").view("<f4")
    patterns = np.linspace(low, high, 32, dtype=np.float32).reshape(4, 8)
    patterns[0, 0], patterns[-1, -1] = low, high
    events = [heatmap_event("weights/w", s, g, first=s == 0) for s, g in grids.items()]
    events += [heatmap_event("weights/small", s, g, first=s == 0) for s, g in small.items()]
    events += [heatmap_event("weights/patterns", 0, patterns, first=True)]
    write_events(logdir / "new", events, 0)
    expected["new"] = {
        "weights/w": {s: (g, np.float32 if s == 5 else np.float16) for s, g in grids.items()},
        "weights/small": {s: (g, np.float32) for s, g in small.items()},
        "weights/patterns": {0: (patterns, np.float16)},
    }

    old = {s: weight_like_grid(20 + s, shape=(8, 8)) for s in range(3)}
    old[1][3, 3] = NAN
    write_events(logdir / "old", [version1_event("weights/w", s, g, first=s == 0) for s, g in old.items()], 0)
    expected["old"] = {"weights/w": {s: (g, np.float32) for s, g in old.items()}}

    # A run begun by an older writer and resumed by this one: the first
    # event's metadata (version 1, FLOAT32) is what TensorBoard keeps.
    resumed = {s: weight_like_grid(30 + s, shape=(8, 8)) for s in range(4)}
    write_events(logdir / "resumed", [version1_event("weights/w", s, resumed[s], first=s == 0) for s in (0, 1)], 0)
    write_events(logdir / "resumed", [heatmap_event("weights/w", s, resumed[s], first=s == 2) for s in (2, 3)], 1)
    expected["resumed"] = {"weights/w": {s: (g, np.float32 if s < 2 else np.float16) for s, g in resumed.items()}}

    damaged = {s: weight_like_grid(40 + s, shape=(4, 6)) for s in range(3)}
    events = [heatmap_event("weights/w", s, g, first=s == 0) for s, g in damaged.items()]
    bad = metadata.encode_heatmap_grid(damaged[1])
    bad[-1, 5] = 1.0  # a reserved entry set: not our layout
    events[1].summary.value[0].tensor.CopyFrom(summary.tensor_proto(bad))
    write_events(logdir / "damaged", events, 0)
    expected["damaged"] = {"weights/w": {0: (damaged[0], np.float16), 1: (None, None), 2: (damaged[2], np.float16)}}
    return logdir, expected


def _steps(expected_tag):
    return sorted(s for s, (grid, _) in expected_tag.items() if grid is not None)


def _assert_served(grid, dtype, served, tag):
    if dtype == np.float32:
        np.testing.assert_array_equal(served, grid.astype(np.float64), err_msg=tag)
    else:
        assert_float16_faithful(served.astype(np.float32), grid)
        np.testing.assert_array_equal(served, round_trip(grid)[0].astype(np.float64), err_msg=tag)


def _check_data_body(body, grid, dtype):
    assert body["kind"] == "heatmap"
    assert body["shape"] == list(grid.shape)
    _assert_served(grid, dtype, decode_array(body["values"]), body["tag"])
    assert body["range"] == exact_range(grid)
    assert body["nonfinite"] == int(np.count_nonzero(~np.isfinite(grid)))
    # The wire form of non-finite cells: the documented strings, in place.
    flat = list(np.ravel(np.asarray(body["values"], dtype=object)))
    for position in np.flatnonzero(~np.isfinite(grid)):
        value = grid.ravel()[position]
        assert flat[position] == ("NaN" if np.isnan(value) else "Infinity" if value > 0 else "-Infinity")


def _data_url(run, tag, step=None):
    query = {"run": run, "tag": tag}
    if step is not None:
        query["step"] = step
    return PREFIX + "/data?" + urllib.parse.urlencode(query)


def test_python_loader_serves_decoded_grids_and_exact_ranges(logs):
    logdir, expected = logs
    client = Client(make_wsgi_app(logdir))
    for run, tags in expected.items():
        for tag, steps in tags.items():
            for step in _steps(steps):
                response = client.get(_data_url(run, tag, step))
                assert response.status_code == 200, response.get_data(as_text=True)
                body = json.loads(response.get_data())
                assert body["steps"] == _steps(steps), (run, tag)
                grid, dtype = steps[step]
                _check_data_body(body, grid, dtype)
    # The damaged step is skipped with a 404 naming it, not a 500.
    response = client.get(_data_url("damaged", "weights/w", 1))
    assert response.status_code == 404 and "step 1 is not logged" in response.get_data(as_text=True)


def test_rustboard_serves_decoded_grids_and_exact_ranges(logs):
    logdir, expected = logs
    with tensorboard_server(logdir, "--load_fast=true") as server:
        server.wait_for_tags(list(expected))
        for run, tags in expected.items():
            for tag, steps in tags.items():
                want = _steps(steps)
                deadline = time.monotonic() + 60
                while True:  # RustBoard loads incrementally
                    body = server.get_json(_data_url(run, tag))
                    if body["steps"] == want or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                assert body["steps"] == want, (run, tag)
                for step in want:
                    grid, dtype = steps[step]
                    _check_data_body(server.get_json(_data_url(run, tag, step)), grid, dtype)


def test_csv_export_has_the_decoded_cells(logs):
    logdir, expected = logs
    client = Client(make_wsgi_app(logdir))
    response = client.get(PREFIX + "/csv?run=new&tag=weights%2Fw")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    for step, (grid, dtype) in expected["new"]["weights/w"].items():
        values = [float(r["value"]) for r in rows if int(r["step"]) == step]
        assert len(values) == grid.size
        _assert_served(grid, dtype, np.array(values).reshape(grid.shape), "csv step %d" % step)


def test_read_returns_decoded_float32_grids(logs):
    logdir, expected = logs
    data = read(logdir)
    for run, tags in expected.items():
        for tag, steps in tags.items():
            series = data[run][tag]
            assert series.steps == _steps(steps), (run, tag)
            for step, values in zip(series.steps, series.values):
                grid, dtype = steps[step]
                assert values.dtype == np.float32 and values.shape == grid.shape
                _assert_served(grid, dtype, values.astype(np.float64), "%s %s %d" % (run, tag, step))
    # Version-1 logs read exactly as before: the very float32 bits.
    for step, values in zip(data["old"]["weights/w"].steps, data["old"]["weights/w"].values):
        assert values.tobytes() == expected["old"]["weights/w"][step][0].tobytes()


# -- the tab --------------------------------------------------------------------


def test_card_header_shows_the_exact_range(tmp_path):
    from browser import chromium, plugin_frame

    # float16 holds -0.3 as -0.2998 and 0.1 as 0.09998: the header must show
    # the exact float32 range, the cells stay float16.
    grid = np.linspace(-0.3, 0.1, 64, dtype=np.float32).reshape(8, 8)
    grid[0, 0], grid[-1, -1] = np.float32(-0.3), np.float32(0.1)
    assert metadata.encode_heatmap_grid(grid).dtype == np.float16
    write_events(tmp_path / "logs" / "run", [heatmap_event("weights/w", 0, grid, first=True)], 0)
    with tensorboard_server(tmp_path / "logs", "--load_fast=false") as server:
        server.wait_for_tags(["run"])
        with chromium() as page:
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/")
            page.get_by_role("tab", name=re.compile("model insight", re.I)).click()
            frame = plugin_frame(page)
            selector = '.card[data-kind="heatmap"][data-run="run"]'
            frame.wait_for_selector(selector + '[data-state="ready"]')
            stats = frame.locator(selector + " .card-stats").first.inner_text()
            assert "min -0.3 · max 0.1 ·" in stats, stats
            assert errors == []
