"""A small Cinder volume driver whose volumes are sparse files in one directory.

Loaded by real Cinder (``volume_driver = tests.support.filevolumes.FileVolumeDriver``)
inside the process that :mod:`tests.support.cinder_service` runs; never imported by the
test process itself (it imports cinder, which monkey-patches with eventlet).

Contract with Nova's test virt driver: an attachment's ``connection_info`` is
``{'driver_volume_type': <type>, 'data': {'device_path': <absolute path of the file>}}``
where ``<type>`` is ``local`` by default (``file_volumes_connection_type``; ``gpfs`` makes
Nova's libvirt driver write a plain file disk). Any connector is accepted: Nova's fake
virt driver sends one without an iSCSI initiator.

The directory must not be on tmpfs: QEMU opens volumes with O_DIRECT (``cache='none'``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cinder.image import image_utils
from cinder.volume import driver, volume_utils
from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

file_volume_opts = [
    cfg.StrOpt("file_volumes_dir", help="Directory holding one sparse file per volume."),
    cfg.StrOpt(
        "file_volumes_connection_type",
        default="local",
        help="driver_volume_type of the connection_info handed to Nova.",
    ),
    cfg.IntOpt("file_volumes_capacity_gb", default=1000, help="Capacity reported."),
]
cfg.CONF.register_opts(file_volume_opts)

GiB = 1024**3


class FileVolumeDriver(driver.VolumeDriver):
    """Volumes, snapshots and clones as sparse files; image copies through qemu-img."""

    VERSION = "1.0.0"
    # Not a real vendor driver: nobody runs a CI for it.
    SUPPORTED = True
    CI_WIKI_NAME = "osbuild-tests"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(file_volume_opts)
        self._dir = Path(cfg.CONF.file_volumes_dir or "")
        self._connection_type = cfg.CONF.file_volumes_connection_type

    @classmethod
    def get_driver_options(cls) -> list[cfg.Opt]:
        return list(file_volume_opts)

    # ----------------------------------------------------------------- setup, stats

    def do_setup(self, context: Any) -> None:
        if not cfg.CONF.file_volumes_dir:
            raise RuntimeError("file_volumes_dir is not set")
        self._dir.mkdir(parents=True, exist_ok=True)

    def check_for_setup_error(self) -> None:
        if not os.access(self._dir, os.W_OK):
            raise RuntimeError(f"{self._dir} is not writable")

    def _update_volume_stats(self) -> None:
        capacity = cfg.CONF.file_volumes_capacity_gb
        used = sum(p.stat().st_blocks * 512 for p in self._dir.iterdir() if p.is_file())
        self._stats = {
            "volume_backend_name": self.configuration.safe_get("volume_backend_name") or "file",
            "vendor_name": "osbuild",
            "driver_version": self.VERSION,
            "storage_protocol": "file",
            "total_capacity_gb": capacity,
            "free_capacity_gb": max(capacity - used / GiB, 0),
            "reserved_percentage": 0,
            "thin_provisioning_support": True,
            "thick_provisioning_support": False,
            "max_over_subscription_ratio": 20.0,
            "multiattach": False,
            "sparse_copy_volume": True,
        }

    # ----------------------------------------------------------------- files

    def local_path(self, volume: Any) -> str:
        return str(self._dir / volume["name"])

    def _path(self, obj: Any) -> Path:
        return self._dir / obj["name"]

    @staticmethod
    def _make_sparse(path: Path, size_gb: int) -> None:
        with path.open("wb") as fh:
            fh.truncate(int(size_gb) * GiB)

    @staticmethod
    def _copy_sparse(src: Path, dst: Path, size_gb: int) -> None:
        # Skip holes: read in 1 MiB blocks and seek over blocks of zeros.
        block = 1024 * 1024
        zero = bytes(block)
        with src.open("rb") as fin, dst.open("wb") as fout:
            while chunk := fin.read(block):
                if chunk == zero[: len(chunk)]:
                    fout.seek(len(chunk), os.SEEK_CUR)
                else:
                    fout.write(chunk)
            fout.truncate(max(int(size_gb) * GiB, fin.tell()))

    def create_volume(self, volume: Any) -> dict[str, Any]:
        path = self._path(volume)
        self._make_sparse(path, volume["size"])
        LOG.info("created %s (%s GiB)", path, volume["size"])
        return {}

    def delete_volume(self, volume: Any) -> None:
        self._path(volume).unlink(missing_ok=True)

    def extend_volume(self, volume: Any, new_size: int) -> None:
        with self._path(volume).open("r+b") as fh:
            fh.truncate(int(new_size) * GiB)

    def create_cloned_volume(self, volume: Any, src_vref: Any) -> dict[str, Any]:
        self._copy_sparse(self._path(src_vref), self._path(volume), volume["size"])
        return {}

    def create_snapshot(self, snapshot: Any) -> None:
        src = self._dir / snapshot.volume_name
        self._copy_sparse(src, self._path(snapshot), snapshot.volume_size)

    def delete_snapshot(self, snapshot: Any) -> None:
        self._path(snapshot).unlink(missing_ok=True)

    def create_volume_from_snapshot(self, volume: Any, snapshot: Any) -> dict[str, Any]:
        self._copy_sparse(self._path(snapshot), self._path(volume), volume["size"])
        return {}

    def revert_to_snapshot(self, context: Any, volume: Any, snapshot: Any) -> None:
        shutil.copyfile(self._path(snapshot), self._path(volume))

    # ----------------------------------------------------------------- images

    def copy_image_to_volume(
        self,
        context: Any,
        volume: Any,
        image_service: Any,
        image_id: str,
        disable_sparse: bool = False,
    ) -> None:
        # The files belong to this process: qemu-img needs no root.
        image_utils.fetch_to_raw(
            context,
            image_service,
            image_id,
            self.local_path(volume),
            self.configuration.volume_dd_blocksize,
            size=volume["size"],
            run_as_root=False,
            disable_sparse=disable_sparse,
        )
        # qemu-img convert rewrote the file at the image's size; a block device (and
        # Cinder's NFS driver, which resizes after the copy) keeps the volume's size.
        with self._path(volume).open("r+b") as fh:
            end = fh.seek(0, os.SEEK_END)
            if end < int(volume["size"]) * GiB:
                fh.truncate(int(volume["size"]) * GiB)

    def copy_volume_to_image(
        self, context: Any, volume: Any, image_service: Any, image_meta: dict[str, Any]
    ) -> None:
        volume_utils.upload_volume(
            context, image_service, image_meta, self.local_path(volume), volume,
            run_as_root=False,
        )  # fmt: skip

    # ----------------------------------------------------------------- exports, connections

    def ensure_export(self, context: Any, volume: Any) -> None:
        return None

    def create_export(self, context: Any, volume: Any, connector: Any) -> None:
        return None

    def remove_export(self, context: Any, volume: Any) -> None:
        return None

    def create_export_snapshot(self, context: Any, snapshot: Any, connector: Any) -> None:
        return None

    def remove_export_snapshot(self, context: Any, snapshot: Any) -> None:
        return None

    def validate_connector(self, connector: Any) -> None:
        # Nova's fake virt driver sends {'ip', 'initiator', 'host'}; a real iSCSI driver
        # would insist on an initiator. Any connector is good for a file on this host.
        return None

    def initialize_connection(self, volume: Any, connector: Any, **kwargs: Any) -> dict[str, Any]:
        return {
            "driver_volume_type": self._connection_type,
            "data": {"device_path": self.local_path(volume)},
        }

    def terminate_connection(self, volume: Any, connector: Any, **kwargs: Any) -> None:
        return None
