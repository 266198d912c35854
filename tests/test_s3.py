"""S3 logdirs: our writer -> a real S3-compatible server -> TensorBoard -> the tab.

The server is moto in server mode on loopback. TensorBoard's S3 support is its
own filesystem layer (`tensorboard.compat.tensorflow_stub.io.gfile`, boto3
underneath); it takes the endpoint from `S3_ENDPOINT` (read once, when that
module is imported) or, since it passes `endpoint_url=None` otherwise, from
boto3's own `AWS_ENDPOINT_URL`, read at every client creation. The tests use
the latter so they do not depend on import order.
"""

from __future__ import annotations

import json
import urllib.parse

import numpy as np
import pytest
from werkzeug.test import Client

from conftest import CLASS_NAMES, MANY_STEPS, make_wsgi_app, write_sample_logdir

boto3 = pytest.importorskip("boto3", reason="boto3 (test extra) is needed for S3 logdirs")
moto_server = pytest.importorskip(
    "moto.server", reason="moto[s3] with flask (test extras) runs the loopback S3 server"
)

PREFIX = "/data/plugin/torch_visualization"
BUCKET = "tv-test-bucket"


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield "http://%s:%d" % (host, port)
    finally:
        server.stop()


@pytest.fixture()
def s3_logdir(s3_endpoint, monkeypatch, tmp_path):
    """An empty bucket on the loopback server; returns `s3://bucket/runs`."""
    # Fake credentials, no config files, no instance metadata lookups: nothing
    # may leave the machine.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("S3_ENDPOINT", raising=False)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield "s3://%s/runs" % BUCKET
    objects = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    for obj in objects:
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


def _get_json(client, url):
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data())


def _data(client, run, tag, step):
    from torch_visualization.tb_plugin.encoding import decode_array

    query = urllib.parse.urlencode({"run": run, "tag": tag, "step": step})
    body = _get_json(client, PREFIX + "/data?" + query)
    return body, np.asarray(decode_array(body["values"]), dtype=np.float64)


def test_writer_to_s3_and_tab_reads_it_back(s3_logdir):
    expected = write_sample_logdir(s3_logdir)

    # The event files really are objects in the bucket, not local files.
    keys = [
        o["Key"]
        for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]
    ]
    for run in expected:
        assert any(k.startswith("runs/%s/events.out.tfevents." % run) for k in keys), keys

    client = Client(make_wsgi_app(s3_logdir))
    tags = _get_json(client, PREFIX + "/tags")["runs"]
    assert set(tags) == set(expected)
    for run, by_tag in expected.items():
        assert set(tags[run]) == set(by_tag)
        assert tags[run]["outputs/classes"]["labels"] == CLASS_NAMES
        for tag, by_step in by_tag.items():
            steps = sorted(by_step)
            for step in (steps[0], steps[-1]):
                body, values = _data(client, run, tag, step)
                # Every logged step is served, not TensorBoard's default sample.
                assert body["steps"] == steps
                np.testing.assert_allclose(
                    values, by_step[step].astype(np.float64), rtol=1e-6, equal_nan=True
                )
    # More steps than the Python loader keeps by default (10): all were served.
    assert len(expected["alpha"]["outputs/classes"]) == MANY_STEPS


def test_read_api_and_dataframe_from_s3(s3_logdir):
    pytest.importorskip("pandas", reason="pandas (test extra) is needed for to_dataframe")
    import torch

    from torch_visualization import SummaryWriter
    from torch_visualization.reader import read, to_dataframe

    writer = SummaryWriter(s3_logdir + "/exp1")
    weight = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    writer.add_weight_heatmap("weights/w", weight, 5)
    writer.add_class_pie("outputs/classes", [1.0, 3.0], 5, class_names=["a", "b"])
    writer.close()

    data = read(s3_logdir)
    np.testing.assert_array_equal(data["exp1"]["weights/w"].values[0], weight.numpy())
    frame = to_dataframe(s3_logdir, kinds=["pie"])
    assert frame[["run", "tag", "step", "label", "value"]].values.tolist() == [
        ["exp1", "outputs/classes", 5, "a", 1.0],
        ["exp1", "outputs/classes", 5, "b", 3.0],
    ]


def test_load_fast_auto_uses_python_loader_for_s3():
    """Pins the README's claim: RustBoard serves local and gs:// logdirs only.

    `--load_fast=auto` (the default) falls back to the Python loader for any
    other scheme; this is TensorBoard's own decision (`program.py`).
    """
    from tensorboard import default, program

    def uses_rustboard(logdir):
        tb = program.TensorBoard(plugins=default.get_plugins())
        tb.configure(argv=["tensorboard", "--logdir", logdir])
        return program._should_use_data_server(tb.flags)

    assert uses_rustboard("/tmp/runs")
    assert uses_rustboard("gs://bucket/runs")
    assert not uses_rustboard("s3://bucket/runs")
