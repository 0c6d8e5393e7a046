"""TFRecord files and ``tf.train.Example`` records, read and written without TensorFlow.

**Framing** (one record): ``uint64 length`` (little endian), ``uint32 masked_crc32c(length bytes)``,
``data``, ``uint32 masked_crc32c(data)``. The mask is ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod
2**32) over CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).

**tf.train.Example** is protobuf: ``Example{Features features = 1}``,
``Features{map<string, Feature> feature = 1}`` (map entries: key = 1, value = 2), ``Feature{oneof
BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3}``, each list ``repeated
value = 1`` (floats and int64s packed or not). The hand-written wire-format parser below covers exactly
that; unknown fields are skipped as protobuf requires.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from shared.validation import check_existing_path

_CRC_TABLE: list[int] = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)
del _i, _c


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``.

    Examples
    --------
    >>> hex(crc32c(b"123456789"))  # the standard check value
    '0xe3069283'
    """
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: CRC-32C rotated right by 15 bits plus 0xa282ead8."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordError(ValueError):
    """A TFRecord file is truncated or a checksum does not match."""


def read_tfrecord(path: str | Path, *, check_crc: bool = True) -> Iterator[bytes]:
    """Yield the raw records of a TFRecord file (uncompressed), checking both checksums by default.

    Raises
    ------
    TFRecordError
        On a truncated record or a checksum mismatch, naming the file and the record index.
    """
    p = check_existing_path(path, name="TFRecord file", kind="file")
    with open(p, "rb") as f:
        index = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise TFRecordError(f"{p}: record {index} is truncated (header of {len(header)} bytes)")
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:])
            if check_crc and masked_crc32c(header[:8]) != length_crc:
                raise TFRecordError(f"{p}: record {index} has a bad length checksum (corrupt file?)")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise TFRecordError(f"{p}: record {index} is truncated ({len(data)} of {length} bytes)")
            if check_crc and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise TFRecordError(f"{p}: record {index} has a bad data checksum (corrupt file?)")
            yield data
            index += 1


def write_tfrecord(path: str | Path, records: Iterable[bytes]) -> int:
    """Write raw records as a TFRecord file (atomically: a temporary file renamed at the end).

    Returns
    -------
    n : the number of records written.
    """
    from shared.jobs import atomic_path

    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for data in records:
            header = struct.pack("<Q", len(data))
            f.write(header + struct.pack("<I", masked_crc32c(header)))
            f.write(data + struct.pack("<I", masked_crc32c(data)))
            n += 1
    return n


# ------------------------------------------------------------------------------ protobuf wire format


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint in protobuf message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes in protobuf message")


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """Yield (field number, wire type, value) of a message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {number})")
        if pos > len(buf):
            raise ValueError(f"truncated protobuf field {number}")
        yield number, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _parse_feature(buf: bytes) -> list:
    for number, _, body in _fields(buf):
        if number == 1:  # BytesList
            return [bytes(v) for n, w, v in _fields(body) if n == 1 and w == 2]
        if number == 2:  # FloatList
            out: list = []
            for n, w, v in _fields(body):
                if n == 1 and w == 2:
                    out.extend(np.frombuffer(v, "<f4").tolist())
                elif n == 1 and w == 5:
                    out.append(struct.unpack("<f", v)[0])
            return out
        if number == 3:  # Int64List
            out = []
            for n, w, v in _fields(body):
                if n == 1 and w == 2:
                    pos = 0
                    while pos < len(v):
                        x, pos = _read_varint(v, pos)
                        out.append(_signed64(x))
                elif n == 1 and w == 0:
                    out.append(_signed64(v))
            return out
    return []


def parse_example(record: bytes) -> dict[str, list]:
    """Parse a serialised ``tf.train.Example`` into ``{name: list of bytes | float | int}``.

    Examples
    --------
    >>> parse_example(encode_example({"label": [3], "image": [b"jpeg"]}))
    {'label': [3], 'image': [b'jpeg']}
    """
    features: dict[str, list] = {}
    for number, wire, body in _fields(record):
        if number != 1 or wire != 2:
            continue
        for n, w, entry in _fields(body):
            if n != 1 or w != 2:
                continue
            key, value = "", b""
            for en, ew, ev in _fields(entry):
                if en == 1 and ew == 2:
                    key = bytes(ev).decode("utf-8")
                elif en == 2 and ew == 2:
                    value = ev
            features[key] = _parse_feature(value)
    return features


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def encode_example(features: dict[str, list | bytes | int | float | np.ndarray]) -> bytes:
    """Serialise ``{name: values}`` as a ``tf.train.Example`` (bytes -> BytesList, ints -> Int64List,
    floats -> FloatList, packed). A bare bytes/int/float is a one-element list."""
    entries = b""
    for key, values in features.items():
        if isinstance(values, (bytes, int, float, np.integer, np.floating)):
            values = [values]
        values = list(np.asarray(values).ravel()) if isinstance(values, np.ndarray) else list(values)
        if values and all(isinstance(v, bytes) for v in values):
            kind = b"".join(_length_delimited(1, v) for v in values)
            feature = _length_delimited(1, kind)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            feature = _length_delimited(3, _length_delimited(1, b"".join(_varint(int(v)) for v in values)))
        elif all(isinstance(v, (float, np.floating, int, np.integer)) for v in values):
            packed = np.asarray(values, "<f4").tobytes()
            feature = _length_delimited(2, _length_delimited(1, packed))
        else:
            raise TypeError(f"feature {key!r}: values must be all bytes, all ints or all floats")
        entry = _length_delimited(1, key.encode("utf-8")) + _length_delimited(2, feature)
        entries += _length_delimited(1, entry)
    return _length_delimited(1, entries)
