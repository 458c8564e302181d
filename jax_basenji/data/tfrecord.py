"""TFRecord files and `tf.train.Example` messages without TensorFlow.

Framing (TensorFlow's record_writer): per record
  uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
little-endian; a ZLIB file is that byte stream inside one zlib stream.
CRC32C comes from google-crc32c and the Example schema is parsed by the
protobuf library (the schema is declared below, so no generated code and no
TensorFlow); only the 20-line framing is written by hand: no maintained
library reads ZLIB TFRecords with CRC checks.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO, Iterator, Mapping

import google_crc32c
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from jax_basenji.errors import UserError

_MASK_DELTA = 0xA282EAD8


class RecordError(UserError):
    """A TFRecord file is corrupt, truncated, or holds an unexpected record."""


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class _ZlibReader:
    """File-like `read(n)` over a zlib stream, decompressing in bounded chunks."""

    def __init__(self, f: BinaryIO):
        self._f, self._z, self._buf = f, zlib.decompressobj(), bytearray()

    def read(self, n: int) -> bytes:
        while len(self._buf) < n and not self._z.eof:
            chunk = self._f.read(1 << 20)
            if not chunk:
                break
            self._buf += self._z.decompress(chunk)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    @property
    def complete(self) -> bool:
        """The stream's end marker was read (a file cut at a record boundary has none)."""
        return self._z.eof


def read_records(path: str, compression: str = "ZLIB") -> Iterator[bytes]:
    """Yield the payload of every record of `path`, checking both CRCs."""
    with open(path, "rb") as raw:
        f = _ZlibReader(raw) if compression == "ZLIB" else raw
        index = 0
        while True:
            try:  # a damaged ZLIB stream fails in any read, the header's included
                header = f.read(12)
                if not header:
                    if compression == "ZLIB" and not f.complete:
                        raise RecordError("truncated ZLIB stream (no end marker)")
                    return
                if len(header) < 12:
                    raise RecordError("truncated record header")
                length, length_crc = struct.unpack("<QI", header)
                if masked_crc(header[:8]) != length_crc:
                    raise RecordError("length CRC mismatch")
                data = f.read(length)
                footer = f.read(4)
                if len(data) < length or len(footer) < 4:
                    raise RecordError("truncated record")
                if masked_crc(data) != struct.unpack("<I", footer)[0]:
                    raise RecordError("data CRC mismatch")
            except (RecordError, zlib.error) as e:
                raise RecordError(f"{path}: record {index}: {e}") from None
            yield data
            index += 1


def write_records(path: str, records, compression: str = "ZLIB") -> int:
    """Write payloads as TensorFlow does (`TFRecordOptions(compression_type=...)`)."""
    z = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS) if compression == "ZLIB" else None
    n = 0
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            frame = b"".join([length, struct.pack("<I", masked_crc(length)), data,
                              struct.pack("<I", masked_crc(data))])
            f.write(z.compress(frame) if z else frame)
            n += 1
        if z:
            f.write(z.flush())
    return n


def _example_classes():
    """tf.train.Example / Features / Feature, declared with protobuf's descriptors."""
    fdp = descriptor_pb2.FileDescriptorProto(name="jax_basenji/example.proto", package="tensorflow",
                                             syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL

    def message(name, fields, nested=()):
        m = fdp.message_type.add(name=name)
        for fname, number, label, ftype, type_name in fields:
            f = m.field.add(name=fname, number=number, label=label, type=ftype)
            if type_name:
                f.type_name = type_name
        for n in nested:
            m.nested_type.add().CopyFrom(n)
        return m

    message("BytesList", [("value", 1, rep, T.TYPE_BYTES, None)])
    message("FloatList", [("value", 1, rep, T.TYPE_FLOAT, None)])
    message("Int64List", [("value", 1, rep, T.TYPE_INT64, None)])
    feature = message("Feature", [("bytes_list", 1, opt, T.TYPE_MESSAGE, ".tensorflow.BytesList"),
                                  ("float_list", 2, opt, T.TYPE_MESSAGE, ".tensorflow.FloatList"),
                                  ("int64_list", 3, opt, T.TYPE_MESSAGE, ".tensorflow.Int64List")])
    feature.oneof_decl.add(name="kind")
    for f in feature.field:
        f.oneof_index = 0
    entry = descriptor_pb2.DescriptorProto(name="FeatureEntry")
    entry.field.add(name="key", number=1, label=opt, type=T.TYPE_STRING)
    entry.field.add(name="value", number=2, label=opt, type=T.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    entry.options.map_entry = True
    message("Features", [("feature", 1, rep, T.TYPE_MESSAGE, ".tensorflow.Features.FeatureEntry")], [entry])
    message("Example", [("features", 1, opt, T.TYPE_MESSAGE, ".tensorflow.Features")])
    pool = descriptor_pool.DescriptorPool()  # private: no clash with a real TensorFlow
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _example_classes()


def parse_bytes_features(data: bytes, names: tuple[str, ...]) -> dict[str, bytes]:
    """The named single-value bytes features of a serialized tf.train.Example."""
    ex = Example()
    try:
        ex.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError
        raise RecordError(f"not a tf.train.Example: {e}") from None
    out = {}
    for name in names:
        if name not in ex.features.feature:
            raise RecordError(f"tf.train.Example lacks the {name!r} feature")
        values = ex.features.feature[name].bytes_list.value
        if len(values) != 1:
            raise RecordError(f"feature {name!r} holds {len(values)} byte strings, expected 1")
        out[name] = values[0]
    return out


def serialize_bytes_features(features: Mapping[str, bytes]) -> bytes:
    ex = Example()
    for name, value in features.items():
        ex.features.feature[name].bytes_list.value.append(value)
    return ex.SerializeToString()
