"""The small qcow2 writer/reader the attached simulator uses for Cinder-style conversions."""

from __future__ import annotations

import os
import struct

import pytest

from tests.support.qcow2 import CLUSTER, is_qcow2, qcow2_to_raw, raw_to_qcow2


@pytest.mark.parametrize("size", [1, 1000, CLUSTER, CLUSTER + 1, 3 * CLUSTER + 17])
def test_round_trip_keeps_the_bytes(size: int) -> None:
    raw = os.urandom(size)
    image = raw_to_qcow2(raw)
    assert is_qcow2(image) and not is_qcow2(raw)
    back = qcow2_to_raw(image)
    assert back[:size] == raw
    assert set(back[size:]) <= {0}
    assert len(back) % CLUSTER == 0


def test_header_describes_a_version_2_image_without_backing_file() -> None:
    image = raw_to_qcow2(b"x" * (2 * CLUSTER))
    magic, version, backing, _, cluster_bits, size = struct.unpack_from(">4sIQIIQ", image)
    assert (magic, version, backing, cluster_bits, size) == (b"QFI\xfb", 2, 0, 16, 2 * CLUSTER)


def test_reader_refuses_what_is_not_qcow2() -> None:
    with pytest.raises(ValueError, match="not a simple qcow2"):
        qcow2_to_raw(b"\0" * 128)
