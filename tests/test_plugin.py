"""The plugin served by real TensorBoard, over real event files.

Python loader: TensorBoard's own WSGI app through werkzeug's test client.
RustBoard: a real `tensorboard --load_fast=true` subprocess.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import numpy as np
import pytest
from werkzeug.test import Client

from conftest import CLASS_NAMES, MANY_STEPS, make_tensorboard, make_wsgi_app, tensorboard_server
from torch_visualization.tb_plugin.encoding import decode_array

PREFIX = "/data/plugin/torch_visualization"


def data_url(run, tag, step=None):
    query = {"run": run, "tag": tag}
    if step is not None:
        query["step"] = step
    return PREFIX + "/data?" + urllib.parse.urlencode(query)


@pytest.fixture(scope="module")
def client(sample_logdir):
    logdir, _ = sample_logdir
    return Client(make_wsgi_app(logdir))


def get_json(client, url):
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data())


def test_plugin_is_listed_and_enabled(client):
    listing = get_json(client, "/data/plugins_listing")
    entry = listing["torch_visualization"]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "Model Insight"
    assert entry["loading_mechanism"]["module_path"] == PREFIX + "/index.js"


def test_tags_lists_every_run_and_kind(client):
    tags = get_json(client, PREFIX + "/tags")["runs"]
    assert set(tags) == {"alpha", "beta"}
    alpha = tags["alpha"]
    assert {tag: info["kind"] for tag, info in alpha.items()} == {
        "outputs/classes": "pie",
        "weights/w": "heatmap",
        "gradients/norm": "bars",
        "features/pca": "scatter",
        "eval/confusion": "confusion",
    }
    assert alpha["outputs/classes"]["labels"] == CLASS_NAMES
    assert alpha["gradients/norm"]["labels"] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert alpha["weights/w"]["original_shape"] == [5, 7]
    assert alpha["outputs/classes"]["max_step"] == MANY_STEPS - 1


def test_served_values_equal_written_values(client, sample_logdir):
    _, expected = sample_logdir
    for run, tags in expected.items():
        for tag, steps in tags.items():
            for step, values in list(steps.items())[-3:]:
                body = get_json(client, data_url(run, tag, step))
                assert body["step"] == step
                served = decode_array(body["values"])
                dtype = np.float32 if tag in ("weights/w", "features/pca") else np.float64
                np.testing.assert_array_equal(served, values.astype(dtype).astype(np.float64))


def test_series_serves_every_step_of_small_kinds(client, sample_logdir):
    _, expected = sample_logdir
    body = get_json(client, PREFIX + "/series?run=alpha&tag=outputs/classes")
    assert body["kind"] == "pie" and body["labels"] == CLASS_NAMES
    assert body["steps"] == list(range(MANY_STEPS))
    assert len(body["wall_times"]) == MANY_STEPS
    for step in (0, MANY_STEPS - 1):
        np.testing.assert_array_equal(decode_array(body["values"][step]), expected["alpha"]["outputs/classes"][step])
    confusion = get_json(client, PREFIX + "/series?run=beta&tag=eval/confusion")
    assert confusion["steps"] == [0, 10, 20]
    np.testing.assert_array_equal(decode_array(confusion["values"][0]), expected["beta"]["eval/confusion"][0])


def test_series_refuses_big_kinds(client):
    response = client.get(PREFIX + "/series?run=alpha&tag=weights/w")
    assert response.status_code == 400
    assert "is a heatmap" in response.get_data(as_text=True)


def test_non_finite_values_reach_the_client(client):
    body = get_json(client, data_url("alpha", "weights/w", 20))
    assert body["values"][0][0] == "NaN"
    assert body["values"][1][1] == "Infinity"
    assert body["values"][2][2] == "-Infinity"
    assert body["nonfinite"] == 3


def test_every_logged_step_is_reachable_by_default(client):
    body = get_json(client, data_url("alpha", "outputs/classes"))
    assert body["steps"] == list(range(MANY_STEPS))
    assert body["step"] == MANY_STEPS - 1


def test_user_samples_flag_wins(sample_logdir):
    logdir, _ = sample_logdir
    small = Client(make_wsgi_app(logdir, "--samples_per_plugin", "torch_visualization=5"))
    body = get_json(small, data_url("alpha", "outputs/classes"))
    assert len(body["steps"]) == 5
    assert body["steps"][-1] == MANY_STEPS - 1


@pytest.mark.parametrize(
    "url, status, message",
    [
        (PREFIX + "/data", 400, "missing query parameter 'run'"),
        (PREFIX + "/data?run=alpha", 400, "missing query parameter 'tag'"),
        (data_url("alpha", "weights/w", "ten"), 400, "step must be an integer"),
        (data_url("alpha", "weights/w", "99999999999999999999"), 400, "step"),
        (PREFIX + "/data?run=alpha&run=beta&tag=weights/w", 400, "given 2 times"),
        (data_url("nope", "weights/w"), 404, "no chart for run 'nope'"),
        (data_url("alpha", "nope"), 404, "no chart for run 'alpha' and tag 'nope'"),
        (data_url("alpha", "weights/w", 15), 404, "step 15 is not logged"),
        (PREFIX + "/nope.js", 404, "no such file"),
        (PREFIX + "/../../etc/passwd", 404, ""),
        (PREFIX + "/%2e%2e/setup.py", 404, "no such file"),
        (PREFIX + "/__init__.py", 404, "no such file"),
    ],
)
def test_bad_queries_are_4xx_with_a_message(client, url, status, message):
    response = client.get(url)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)


def test_static_files_are_served_with_js_type(client):
    response = client.get(PREFIX + "/index.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert b"export" in response.get_data()


def test_rustboard_serves_the_same_data(sample_logdir):
    logdir, expected = sample_logdir
    with tensorboard_server(logdir, "--load_fast=true") as server:
        server.wait_for_tags(["alpha", "beta"])
        # RustBoard loads incrementally: wait until every step is in.
        deadline = time.monotonic() + 60
        while True:
            body = server.get_json(data_url("beta", "outputs/classes"))
            if len(body["steps"]) == MANY_STEPS or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert body["steps"] == list(range(MANY_STEPS))
        for tag, steps in expected["beta"].items():
            step, values = list(steps.items())[-1]
            served = decode_array(server.get_json(data_url("beta", tag, step))["values"])
            dtype = np.float32 if tag in ("weights/w", "features/pca") else np.float64
            np.testing.assert_array_equal(served, values.astype(dtype).astype(np.float64))
        status_body = server.get_json("/data/plugins_listing")
        assert status_body["torch_visualization"]["enabled"] is True


def test_csv_export_has_every_step_in_long_format(client, sample_logdir):
    import csv
    import io

    _, expected = sample_logdir
    response = client.get(PREFIX + "/csv?run=alpha&tag=outputs/classes")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert 'filename="alpha_outputs_classes.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == MANY_STEPS * len(CLASS_NAMES)
    last = [r for r in rows if r["step"] == str(MANY_STEPS - 1)]
    assert [(r["index"], r["label"], r["stat"]) for r in last] == [("0", "cat", "value"), ("1", "dog", "value"), ("2", "bird", "value")]
    np.testing.assert_array_equal([float(r["value"]) for r in last], expected["alpha"]["outputs/classes"][MANY_STEPS - 1])


def test_csv_keeps_non_finite_and_names_cells(client):
    import csv
    import io

    body = client.get(PREFIX + "/csv?run=alpha&tag=weights/w").get_data(as_text=True)
    rows = [r for r in csv.DictReader(io.StringIO(body)) if r["step"] == "20"]
    assert len(rows) == 5 * 7
    by_cell = {r["label"]: r["value"] for r in rows}
    assert (by_cell["0,0"], by_cell["1,1"], by_cell["2,2"]) == ("NaN", "Infinity", "-Infinity")
    confusion = list(csv.DictReader(io.StringIO(client.get(PREFIX + "/csv?run=beta&tag=eval/confusion").get_data(as_text=True))))
    first = [r for r in confusion if r["step"] == "0"]
    assert {(r["label"], r["stat"], float(r["value"])) for r in first if float(r["value"])} == {
        ("cat", "predicted:cat", 1.0), ("dog", "predicted:dog", 1.0), ("dog", "predicted:bird", 1.0),
        ("bird", "predicted:dog", 1.0), ("bird", "predicted:bird", 1.0),
    }


def test_csv_of_unknown_tag_is_404(client):
    response = client.get(PREFIX + "/csv?run=alpha&tag=nope")
    assert response.status_code == 404
    assert "no chart for run 'alpha' and tag 'nope'" in response.get_data(as_text=True)


def test_new_steps_are_served_after_a_reload(tmp_path):
    """The decoded-steps cache must not hide steps logged after the first read."""
    from torch_visualization import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run"))
    writer.add_class_pie("p", [1.0, 2.0], 0)
    writer.flush()
    app, ingester = make_tensorboard(tmp_path)
    live = Client(app)
    assert get_json(live, data_url("run", "p"))["steps"] == [0]
    writer.add_class_pie("p", [3.0, 4.0], 1)
    writer.close()
    ingester.deprecated_multiplexer.Reload()
    body = get_json(live, data_url("run", "p"))
    assert body["steps"] == [0, 1]
    assert body["values"] == [3.0, 4.0]


def test_a_step_with_a_control_character_is_a_bad_request_or_read_not_a_crash():
    """str.strip() drops characters int() does not (a fuzzed `step=0%1F`
    raised a ValueError: a 500)."""
    from tensorboard import errors

    from torch_visualization.tb_plugin import plugin

    for text in ("0\x1f", "\x1c5", "5\x1e"):
        try:
            assert plugin._parse_step(text) in (0, 5)
        except errors.InvalidArgumentError:
            pass
