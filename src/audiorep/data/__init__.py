"""Datasets and file formats: TFRecord / ``tf.train.(Sequence)Example`` without TensorFlow,
and AudioSet's released VGGish features as PyTorch datasets.

``audiorep.data.tfrecord``, ``audiorep.data.example`` and ``audiorep.data.crc`` need only
numpy; the AudioSet datasets (``audiorep.data.audioset``) are imported on first use.
"""

from audiorep.data.crc import crc32c, masked_crc32c
from audiorep.data.example import (
    ProtoDecodeError,
    SequenceExample,
    encode_feature,
    parse_example,
    parse_sequence_example,
    serialize_example,
    serialize_sequence_example,
)
from audiorep.data.tfrecord import (
    SkippedRegion,
    TFRecordError,
    TFRecordIndex,
    TFRecordReader,
    TFRecordWarning,
    TFRecordWriter,
    frame_record,
    index_tfrecords,
    read_record_at,
    read_tfrecord,
    scan_tfrecord,
    write_tfrecord,
)

_AUDIOSET = (
    "AudioSetDataset",
    "AudioSetIterableDataset",
    "AudioSetRecord",
    "AudioSetWithRecordings",
    "audioset_class_mids",
    "audioset_class_names",
    "collate_audioset",
    "decode_audioset_record",
    "find_shards",
)

__all__ = [
    "ProtoDecodeError",
    "SequenceExample",
    "SkippedRegion",
    "TFRecordError",
    "TFRecordIndex",
    "TFRecordReader",
    "TFRecordWarning",
    "TFRecordWriter",
    "crc32c",
    "encode_feature",
    "frame_record",
    "index_tfrecords",
    "masked_crc32c",
    "parse_example",
    "parse_sequence_example",
    "read_record_at",
    "read_tfrecord",
    "scan_tfrecord",
    "serialize_example",
    "serialize_sequence_example",
    "write_tfrecord",
    *_AUDIOSET,
]


def __getattr__(name: str):
    # Lazy: the AudioSet datasets import torch; the file-format modules do not.
    if name in _AUDIOSET:
        from audiorep.data import audioset

        return getattr(audioset, name)
    raise AttributeError(f"module 'audiorep.data' has no attribute {name!r}")
