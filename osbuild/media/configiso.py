"""Build the config ISO (ISO9660 + Joliet + Rock Ridge) from a rendered tree, reproducibly."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from time import struct_time
from types import ModuleType
from typing import Any

import pycdlib
import pycdlib.dates
import pycdlib.headervd
import pycdlib.inplaceeditor
import pycdlib.pycdlib
import pycdlib.udf
import pycdlib.utils

from osbuild.errors import InvalidInput
from osbuild.media import eltorito, layout

# Every timestamp on the ISO (volume descriptors, directory records, Rock Ridge TF entries).
# Fixed so that the same inputs give a byte-identical ISO; SOURCE_DATE_EPOCH overrides it.
DEFAULT_EPOCH = 1577836800  # 2020-01-01T00:00:00Z
JOLIET_MAX_NAME = 64
_ISO9660_MAX_FILE = 30  # interchange level 3: name + "." + extension
_ISO9660_MAX_DIR = 31
_NOT_D_CHAR = re.compile(r"[^A-Z0-9_]")
_CHUNK = 1 << 20

_PYCDLIB_MODULES: tuple[ModuleType, ...] = (
    pycdlib.dates,
    pycdlib.headervd,
    pycdlib.inplaceeditor,
    pycdlib.pycdlib,
    pycdlib.udf,
    pycdlib.utils,
)
# Re-entrant: a caller already holding the frozen clock may build another ISO inside it.
_clock_lock = threading.RLock()


class _FrozenTime:
    """Stands in for the `time` module inside pycdlib: a fixed clock in UTC."""

    def __init__(self, epoch: float) -> None:
        self._epoch = epoch

    def time(self) -> float:
        return self._epoch

    def localtime(self, seconds: float | None = None) -> struct_time:
        # UTC, so that the GMT offset pycdlib records does not depend on the host's zone.
        return time.gmtime(self._epoch if seconds is None else seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextmanager
def frozen_pycdlib_clock(epoch: float) -> Iterator[None]:
    """pycdlib reads the wall clock itself and has no option to fix it: swap its `time`."""
    with _clock_lock:
        saved = [(module, module.time) for module in _PYCDLIB_MODULES]
        try:
            for module, _ in saved:
                module.time = _FrozenTime(epoch)  # type: ignore[attr-defined]
            yield
        finally:
            for module, original in saved:
                module.time = original  # type: ignore[attr-defined]


def source_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return DEFAULT_EPOCH
    if not value.isdigit():
        raise InvalidInput([f"SOURCE_DATE_EPOCH: {value!r} is not a number of seconds"])
    return int(value)


def _iso9660_name(name: str, *, is_dir: bool, taken: set[str]) -> str:
    """A unique ISO9660 level-3 name (d-characters only) for ``name`` in one directory."""
    upper = name.upper()
    if is_dir:
        stem, ext = _NOT_D_CHAR.sub("_", upper)[:_ISO9660_MAX_DIR], ""
    else:
        base, dot, extension = upper.rpartition(".")
        if not dot:
            base, extension = upper, ""
        ext = _NOT_D_CHAR.sub("_", extension)[:8]
        stem = _NOT_D_CHAR.sub("_", base)[: _ISO9660_MAX_FILE - len(ext) - 1] or "_"
    candidate, counter = stem, 1
    while True:
        full = candidate if is_dir else f"{candidate}.{ext}"
        if full not in taken:
            taken.add(full)
            return full if is_dir else f"{full};1"
        counter += 1
        suffix = f"_{counter}"
        limit = _ISO9660_MAX_DIR if is_dir else _ISO9660_MAX_FILE - len(ext) - 1
        candidate = stem[: limit - len(suffix)] + suffix


def _walk(root: Path) -> Iterator[tuple[Path, bool]]:
    """Every directory and file below ``root``, parents first, in a stable order."""
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.is_symlink():
            raise InvalidInput([f"{entry}: the config tree must not contain symlinks"])
        if entry.is_dir():
            yield entry, True
            yield from _walk(entry)
        elif entry.is_file():
            yield entry, False


def build_iso(tree: Path, iso_path: Path, *, epoch: int | None = None) -> tuple[str, int]:
    """Write ``tree`` as the config ISO; returns (sha256, size). Files are streamed from disk."""
    epoch = source_epoch() if epoch is None else epoch
    iso_names: dict[Path, str] = {tree: ""}
    taken: dict[Path, set[str]] = {}
    with frozen_pycdlib_clock(epoch):
        iso = pycdlib.PyCdlib()
        iso.new(
            interchange_level=3,
            joliet=3,
            rock_ridge="1.09",
            vol_ident=layout.VOLUME_LABEL,
            sys_ident="",
        )
        try:
            for path, is_dir in _walk(tree):
                name = path.name
                if len(name) > JOLIET_MAX_NAME:
                    raise InvalidInput([f"{path}: name longer than {JOLIET_MAX_NAME} characters"])
                parent = path.parent
                short = _iso9660_name(name, is_dir=is_dir, taken=taken.setdefault(parent, set()))
                iso_path_str = f"{iso_names[parent]}/{short}"
                joliet = "/" + path.relative_to(tree).as_posix()
                if is_dir:
                    iso_names[path] = iso_path_str
                    iso.add_directory(iso_path_str, rr_name=name, joliet_path=joliet)
                else:
                    # By path: pycdlib copies the file into the image only while writing.
                    iso.add_file(str(path), iso_path_str, rr_name=name, joliet_path=joliet)
            iso_path.parent.mkdir(parents=True, exist_ok=True)
            partial = iso_path.with_name(iso_path.name + ".partial")
            # The ISO carries the answer file: readable by its owner only.
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as out:
                    iso.write_fp(out)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        finally:
            iso.close()
    os.replace(partial, iso_path)
    return file_sha256(iso_path), iso_path.stat().st_size


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_config_file(iso_path: Path, path: str) -> bytes | None:
    """One file of a config ISO (``path`` as in media/layout.py); None when it has none.
    Raises InvalidInput when ``iso_path`` is not an ISO."""
    with iso_path.open("rb") as fp:
        iso = eltorito.open_iso(fp, name=str(iso_path))
        try:
            return eltorito.read_file(iso, eltorito.list_files(iso), path)
        finally:
            iso.close()
