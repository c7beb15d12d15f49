"""A minimal qcow2 (version 2) writer and reader, for the attached simulator's image uploads.

Real Cinder converts a volume with qemu-img when asked for ``disk_format=qcow2``, and real
Glance refuses raw bytes labelled qcow2 (415). The attached simulator plays Cinder's and
Nova's part in that upload, so it converts too. Only what small test disks need: one L2
table (up to 512 MiB of data), no snapshots, no compression, no backing file.
"""

from __future__ import annotations

import struct

MAGIC = b"QFI\xfb"
CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS
_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")  # the 72-byte version 2 header
_COPIED = 1 << 63  # refcount is exactly one: the cluster may be written in place
_OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00
_L2_ENTRIES = CLUSTER // 8


def is_qcow2(data: bytes) -> bool:
    return data[:4] == MAGIC


def raw_to_qcow2(data: bytes) -> bytes:
    """``data`` as a qcow2 image whose virtual disk is ``data`` padded to whole clusters."""
    n_data = max(1, -(-len(data) // CLUSTER))
    if n_data > _L2_ENTRIES:
        raise ValueError("raw_to_qcow2 handles at most one L2 table of data (512 MiB)")
    # Cluster layout: header, L1 table, refcount table, refcount block, L2 table, data.
    l1_at, rt_at, rb_at, l2_at, data_at = (CLUSTER * i for i in range(1, 6))
    total_clusters = 5 + n_data
    header = _HEADER.pack(
        MAGIC, 2, 0, 0, CLUSTER_BITS, n_data * CLUSTER, 0, 1, l1_at, rt_at, 1, 0, 0
    )
    l1 = struct.pack(">Q", l2_at | _COPIED)
    refcount_table = struct.pack(">Q", rb_at)
    refcount_block = struct.pack(f">{total_clusters}H", *([1] * total_clusters))
    l2 = struct.pack(f">{n_data}Q", *(data_at + i * CLUSTER | _COPIED for i in range(n_data)))
    out = bytearray(total_clusters * CLUSTER)
    for offset, blob in ((0, header), (l1_at, l1), (rt_at, refcount_table),
                         (rb_at, refcount_block), (l2_at, l2), (data_at, data)):  # fmt: skip
        out[offset : offset + len(blob)] = blob
    return bytes(out)


def qcow2_to_raw(image: bytes) -> bytes:
    """The virtual disk of a simple (uncompressed, no backing file) qcow2 image."""
    fields = _HEADER.unpack_from(image)
    magic, version, backing_offset, _, cluster_bits, size, _, l1_size, l1_at = fields[:9]
    if magic != MAGIC or version not in (2, 3) or backing_offset:
        raise ValueError("not a simple qcow2 image")
    cluster = 1 << cluster_bits
    l2_entries = cluster // 8
    out = bytearray(size)
    for i in range(l1_size):
        (l1_entry,) = struct.unpack_from(">Q", image, l1_at + 8 * i)
        l2_at = l1_entry & _OFFSET_MASK
        if not l2_at:
            continue
        for j in range(l2_entries):
            (l2_entry,) = struct.unpack_from(">Q", image, l2_at + 8 * j)
            src = l2_entry & _OFFSET_MASK
            dst = (i * l2_entries + j) * cluster
            if src and dst < size:
                out[dst : dst + cluster] = image[src : src + cluster]
    return bytes(out)
