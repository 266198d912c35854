"""Our record writer: TensorBoard's bytes, a fast checksum, installed under every writer."""

import io
import random

import pytest
import torch
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as stock_masked
from tensorboard.summary.writer import record_writer

from torch_visualization import SummaryWriter, event_records, read


@pytest.mark.parametrize("size", [0, 1, 3, 8, 63, 64, 65, 4096, 65537, 200001])
def test_checksum_equals_tensorboards(size):
    data = random.Random(size).randbytes(size)
    assert event_records.masked_crc32c(data) == stock_masked(data)


class _Buffer(io.BytesIO):
    def close(self):  # keep the bytes readable after close()
        pass


def test_records_are_byte_identical_to_tensorboards():
    ours, stock = _Buffer(), _Buffer()
    guarded = event_records.GuardedRecordWriter(ours, "memory")
    reference = record_writer.RecordWriter(stock)
    for size in (0, 10, 5000):
        data = random.Random(size).randbytes(size)
        guarded.write(data)
        reference.write(data)
    assert ours.getvalue() == stock.getvalue()


def test_installed_once_under_every_file_writer_and_readable(tmp_path):
    writer = SummaryWriter(str(tmp_path / "run"))
    event_writer = writer._get_file_writer().event_writer
    guard = event_records.install(event_writer)
    assert isinstance(guard, event_records.GuardedRecordWriter)
    assert event_records.install(event_writer) is guard  # idempotent
    writer.add_weight_heatmap("w", torch.randn(64, 64), 3)
    writer.close()
    assert read(str(tmp_path))["run"]["w"].steps == [3]


def test_unknown_layout_is_left_alone():
    assert event_records.install(object()) is None


@pytest.mark.parametrize("walltime", [0.0, 1.5, 1764240000.123456])
@pytest.mark.parametrize("step", [0, 1, 127, 128, 300, 2**40])
def test_event_bytes_equal_protobufs_serialisation(walltime, step):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    summaries = [
        summary_pb2.Summary(),
        summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="a/b", simple_value=2.5)]),
        summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="x" * 300, simple_value=1.0)] * 3),
    ]
    for summary in summaries:
        data = summary.SerializeToString()
        expected = event_pb2.Event(wall_time=walltime, step=step, summary=summary).SerializeToString()
        assert event_records.event_bytes(walltime, step, data) == expected


def test_event_bytes_reject_negative_steps():
    with pytest.raises(ValueError, match="step must be >= 0"):
        event_records.event_bytes(1.0, -1, b"")
    with pytest.raises(ValueError, match="negative"):
        event_records.varint(-5)


def test_event_bytes_go_through_the_writer_thread_and_read_back(tmp_path):
    from tensorboard.compat.proto import summary_pb2

    writer = SummaryWriter(str(tmp_path / "run"))
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=0.25)])
    data = event_records.event_bytes(12.5, 7, summary.SerializeToString())
    assert event_records.write_event_bytes(writer._get_file_writer(), data)
    writer.close()
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    (scalar,) = events.Scalars("loss")
    assert (scalar.step, scalar.wall_time, scalar.value) == (7, 12.5, 0.25)


def test_event_bytes_need_the_known_writer_layout():
    class Elsewhere:
        event_writer = object()

    assert event_records.write_event_bytes(Elsewhere(), b"\x10\x01") is False
