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
