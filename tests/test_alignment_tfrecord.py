"""TFRecord framing and tf.Example parsing, checked against tensorboard's record writer and protobuf."""

import io

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from PIL import Image
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tb_masked_crc32c
from tensorboard.summary.writer.record_writer import RecordWriter

from shared.alignment.human_maps import load_clickme_tfrecords
from shared.alignment.tfrecord import (
    TFRecordError,
    crc32c,
    encode_example,
    masked_crc32c,
    parse_example,
    read_tfrecord,
    write_tfrecord,
)


def _example_class():
    """tf.train.Example built from its schema with protobuf's descriptor machinery (independent codec)."""
    f = descriptor_pb2.FileDescriptorProto(name="rv_example_test.proto", package="rvtest", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    for name, ftype in (("BytesList", T.TYPE_BYTES), ("FloatList", T.TYPE_FLOAT), ("Int64List", T.TYPE_INT64)):
        m = f.message_type.add(name=name)
        m.field.add(name="value", number=1, type=ftype, label=T.LABEL_REPEATED)
    feat = f.message_type.add(name="Feature")
    feat.oneof_decl.add(name="kind")
    for i, name in enumerate(("BytesList", "FloatList", "Int64List"), start=1):
        snake = {"BytesList": "bytes_list", "FloatList": "float_list", "Int64List": "int64_list"}[name]
        feat.field.add(
            name=snake,
            number=i,
            type=T.TYPE_MESSAGE,
            type_name=f".rvtest.{name}",
            label=T.LABEL_OPTIONAL,
            oneof_index=0,
        )
    feats = f.message_type.add(name="Features")
    entry = feats.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=T.TYPE_MESSAGE, type_name=".rvtest.Feature", label=T.LABEL_OPTIONAL)
    feats.field.add(
        name="feature", number=1, type=T.TYPE_MESSAGE, type_name=".rvtest.Features.FeatureEntry", label=T.LABEL_REPEATED
    )
    ex = f.message_type.add(name="Example")
    ex.field.add(name="features", number=1, type=T.TYPE_MESSAGE, type_name=".rvtest.Features", label=T.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("rvtest.Example"))


Example = _example_class()


def test_crc32c_matches_reference_values():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    for data in (b"", b"a", bytes(range(256)) * 3):
        assert masked_crc32c(data) == tb_masked_crc32c(data)


def test_reads_records_written_by_tensorboard(tmp_path):
    path = tmp_path / "tb.tfrecord"
    records = [b"", b"hello", bytes(range(200)) * 5]
    with open(path, "wb") as f:
        writer = RecordWriter(f)
        for r in records:
            writer.write(r)
        writer.flush()
    assert list(read_tfrecord(path)) == records


def test_our_writer_roundtrips_and_detects_corruption(tmp_path):
    path = tmp_path / "x.tfrecord"
    assert write_tfrecord(path, [b"abc", b"defgh"]) == 2
    assert list(read_tfrecord(path)) == [b"abc", b"defgh"]
    raw = bytearray(path.read_bytes())
    raw[14] ^= 0xFF  # inside the first record's data
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(raw))
    with pytest.raises(TFRecordError, match="record 0 has a bad data checksum"):
        list(read_tfrecord(bad))
    assert len(list(read_tfrecord(bad, check_crc=False))) == 2
    trunc = tmp_path / "trunc.tfrecord"
    trunc.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(TFRecordError, match="record 1 is truncated"):
        list(read_tfrecord(trunc))


def test_example_codec_agrees_with_protobuf():
    features = {"image": [b"\x00\x01jpeg"], "label": [7, -3, 2**40], "weights": [0.5, -1.25]}
    ours = encode_example(features)
    msg = Example()
    msg.ParseFromString(ours)
    fmap = msg.features.feature
    assert list(fmap["image"].bytes_list.value) == [b"\x00\x01jpeg"]
    assert list(fmap["label"].int64_list.value) == [7, -3, 2**40]
    assert list(fmap["weights"].float_list.value) == [0.5, -1.25]
    # and the other way round: protobuf's serialisation parsed by ours
    ref = Example()
    ref.features.feature["label"].int64_list.value.extend([1, 2])
    ref.features.feature["heatmap"].bytes_list.value.append(b"xyz")
    ref.features.feature["score"].float_list.value.extend([3.0])
    assert parse_example(ref.SerializeToString()) == {"label": [1, 2], "heatmap": [b"xyz"], "score": [3.0]}


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_load_clickme_shards_jpeg_and_raw(tmp_path):
    rng = np.random.default_rng(0)
    image = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    heat = np.zeros((32, 32), np.uint8)
    heat[8:16, 8:16] = 200
    shard = tmp_path / "val-0.tfrecords"
    write_tfrecord(shard, [encode_example({"image": _jpeg(image), "heatmap": _jpeg(heat), "label": 5})] * 3)
    data = load_clickme_tfrecords(shard, image_shape=(32, 32, 3), heatmap_shape=(32, 32))
    assert data.images.shape == (3, 32, 32, 3) and data.labels.tolist() == [5, 5, 5]
    assert np.abs(data.heatmaps[0] - heat).mean() < 5  # JPEG is lossy
    raw = tmp_path / "clickme_test.tfrecords"
    img_f = rng.random((16, 16, 3)).astype(np.float32)
    hm_f = rng.random((16, 16)).astype(np.float32)
    write_tfrecord(raw, [encode_example({"image": img_f.tobytes(), "heatmap": hm_f.tobytes(), "label": 1})])
    data = load_clickme_tfrecords(raw, image_shape=(16, 16, 3), heatmap_shape=(16, 16))
    np.testing.assert_array_equal(data.images[0], img_f)
    np.testing.assert_array_equal(data.heatmaps[0], hm_f)
    missing = tmp_path / "nolabel.tfrecords"
    write_tfrecord(missing, [encode_example({"image": img_f.tobytes()})])
    with pytest.raises(ValueError, match="lacks ClickMe field"):
        load_clickme_tfrecords(missing)
