"""A Nova virt driver whose guest is osbuild's simulated Windows machine.

Runs inside the real Nova process (:mod:`tests.support.novaprocess`). At spawn it builds
the :class:`osbuild_sim.hypervisor.Machine` libvirt would define from the block devices and
the instance's image properties (with the simulator's own rules), reads every attached
volume from its backing file (``connection_info['data']['device_path']``, the contract with
the file-backed Cinder) and the local root disk from Glance, then plays
:func:`osbuild_sim.guest.boot` in a background thread: console lines go to the log that
``get_console_output`` serves, disk writes to the boot disk's file, the password to
``os-server-password``, and a power-off becomes a STOPPED lifecycle event.

``OSBUILD_GUEST_STATE`` names the directory for local disks and console logs; the pace and
per-server failure scenarios come from :mod:`tests.support.guestcontrol` at every spawn.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from glanceclient import exc as glanceclient_exc
from nova import context as nova_context
from nova import exception, objects
from nova.api.metadata import password
from nova.compute import power_state, task_states
from nova.image import glance
from nova.virt import configdrive, driver, fake
from nova.virt import event as virtevent

from osbuild_sim import guest, hypervisor
from tests.support.guestcontrol import STATE_ENV, read_control, scenario_for, snapshot_fails

LOG = logging.getLogger(__name__)

# libvirt keeps the last 100 KiB of a guest's console log (nova.virt.libvirt.driver).
MAX_CONSOLE_BYTES = 100 * 1024
QCOW2_MAGIC = b"QFI\xfb"
GIB = 1024**3
# Traits the libvirt driver reports on a host with swtpm and Secure Boot firmware.
TPM_TRAITS = (
    "COMPUTE_SECURITY_TPM_1_2",
    "COMPUTE_SECURITY_TPM_2_0",
    "COMPUTE_SECURITY_TPM_TIS",
    "COMPUTE_SECURITY_TPM_CRB",
    "COMPUTE_SECURITY_TPM_SECRET_SECURITY_USER",
    "COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST",
    "COMPUTE_SECURITY_TPM_SECRET_SECURITY_DEPLOYMENT",
)


def used_bytes(path: Path) -> bytes:
    """A sparse file's contents up to the end of its last data extent (not its holes)."""
    with path.open("rb") as fh:
        fd = fh.fileno()
        size = os.fstat(fd).st_size
        end, offset = 0, 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after offset
                break
            offset = os.lseek(fd, start, os.SEEK_HOLE)
            end = offset
        fh.seek(0)
        return fh.read(end)


@dataclasses.dataclass
class _Vm:
    """One guest: its devices' backing files, console log and running thread."""

    uuid: str
    name: str
    workdir: Path
    paths: list[Path]  # backing file of each machine device, in device order
    machine: hypervisor.Machine | None = None
    thread: threading.Thread | None = None
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    written: int = 0  # bytes on the boot disk (the last write), zeroed before the next
    boots: int = 0
    console_read_at: float = -math.inf  # time.monotonic() of the last console output read
    powered_off: bool = False  # the guest shut itself down: its pty console is gone

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"


class GuestDriver(fake.FakeDriver):
    capabilities = {
        **fake.FakeDriver.capabilities,
        "supports_secure_boot": True,
        "supports_vtpm": True,
        "supports_image_type_qcow2": True,
        "supports_image_type_iso": True,
    }

    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        self.state = Path(os.environ.get(STATE_ENV) or "/tmp/osbuild-guests")
        self.state.mkdir(parents=True, exist_ok=True)
        self.vms: dict[str, _Vm] = {}
        self._image_api = glance.API()

    # ---------------------------------------------------------------- scheduling

    def update_provider_tree(self, provider_tree: Any, nodename: str,
                             allocations: Any = None) -> None:
        super().update_provider_tree(provider_tree, nodename, allocations=allocations)
        provider_tree.add_traits(nodename, *TPM_TRAITS)

    # ---------------------------------------------------------------- life cycle

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: Any, allocations: Any, network_info: Any = None,
              block_device_info: Any = None, power_on: bool = True,
              accel_info: Any = None) -> None:
        workdir = self.state / instance.uuid
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            devices, paths = self._devices(context, instance, block_device_info, workdir)
            machine = hypervisor.build_machine(devices, _hw_props(instance))
        except hypervisor.SpawnError as exc:
            raise exception.BuildAbortException(
                instance_uuid=instance.uuid, reason=exc.message) from None
        super().spawn(context, instance, image_meta, injected_files, admin_password,
                      allocations, network_info, block_device_info, power_on, accel_info)
        vm = _Vm(uuid=instance.uuid, name=instance.display_name or "", workdir=workdir,
                 paths=paths, machine=machine, written=_boot_data_length(machine))
        vm.console.touch()
        self.vms[instance.uuid] = vm
        if power_on:
            self._start_guest(vm, instance.key_data, _metadata(instance))

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        vm = self.vms.get(instance.uuid)
        if vm is not None:
            self._stop_guest(vm)
        super().power_off(instance, timeout, retry_interval)

    def power_on(self, context: Any, instance: Any, network_info: Any,
                 block_device_info: Any = None, accel_info: Any = None,
                 share_info: Any = None) -> None:
        super().power_on(context, instance, network_info, block_device_info, accel_info,
                         share_info)
        vm = self.vms.get(instance.uuid)
        if vm is None:
            return
        self._stop_guest(vm)
        # QEMU starts again: libvirt starts a new console log; the disks are read afresh.
        vm.console.write_text("")
        devices, vm.paths = self._devices(context, instance, block_device_info, vm.workdir)
        vm.machine = hypervisor.build_machine(devices, _hw_props(instance))
        vm.written = _boot_data_length(vm.machine)
        self._start_guest(vm, instance.key_data, _metadata(instance))

    def destroy(self, context: Any, instance: Any, network_info: Any,
                block_device_info: Any = None, destroy_disks: bool = True,
                destroy_secrets: bool = True) -> None:
        vm = self.vms.pop(instance.uuid, None)
        if vm is not None:
            self._stop_guest(vm)
        super().destroy(context, instance, network_info, block_device_info, destroy_disks,
                        destroy_secrets)
        if destroy_disks:
            shutil.rmtree(self.state / instance.uuid, ignore_errors=True)

    def get_console_output(self, context: Any, instance: Any) -> str:
        vm = self.vms.get(instance.uuid)
        if vm is not None and vm.powered_off:
            # libvirt's default pty console: a shut-off domain's XML has no pty path, and
            # nova/virt/libvirt/driver.py get_console_output raises ConsoleNotAvailable (the
            # API's 404). Measured with real Nova 34 (shared/docs/openstack-facts.md).
            raise exception.ConsoleNotAvailable()
        if vm is None or not vm.console.exists():
            return ""
        data = vm.console.read_bytes()[-MAX_CONSOLE_BYTES:]
        vm.console_read_at = time.monotonic()
        return data.decode("utf-8", "replace")

    def snapshot(self, context: Any, instance: Any, image_id: str,
                 update_task_state: Any) -> None:
        """createImage of a local-disk server: its root disk, as qcow2, into Glance."""
        if instance.uuid not in self.instances:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        disk = self.state / instance.uuid / "disk"
        if not disk.exists():
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        out = self.state / instance.uuid / f"snapshot-{image_id}.qcow2"
        _qemu_img("convert", "-O", "qcow2", str(disk), str(out))
        meta = self._image_api.get(context, image_id)
        update_task_state(task_state=task_states.IMAGE_UPLOADING,
                          expected_state=task_states.IMAGE_PENDING_UPLOAD)
        if snapshot_fails(instance.display_name):
            out.unlink(missing_ok=True)
            # What nova/image/glance.py re-raises untranslated when Glance answers 500.
            raise glanceclient_exc.HTTPInternalServerError(
                "The server has either erred or is incapable of performing the requested "
                "operation.")
        try:
            with out.open("rb") as fh:
                self._image_api.update(
                    context, image_id,
                    {"name": meta.get("name"), "disk_format": "qcow2",
                     "container_format": "bare", "properties": meta.get("properties") or {}},
                    data=fh, purge_props=False)
        finally:
            out.unlink(missing_ok=True)

    # ---------------------------------------------------------------- devices

    def _devices(self, context: Any, instance: Any, block_device_info: Any,
                 workdir: Path) -> tuple[list[hypervisor.AttachedDevice], list[Path]]:
        devices: list[hypervisor.AttachedDevice] = []
        paths: list[Path] = []
        images = driver.block_device_info_get_image(block_device_info)
        volumes = driver.block_device_info_get_mapping(block_device_info)
        if images or (instance.image_ref and not any(
                v.get("boot_index") == 0 for v in volumes)):
            root = images[0] if images else {}
            image_id = getattr(root, "image_id", None) or instance.image_ref
            path = self._local_disk(context, instance, image_id, workdir)
            devices.append(hypervisor.AttachedDevice(
                kind="cdrom" if root.get("device_type") == "cdrom" else "disk",
                bus=root.get("disk_bus"), boot_index=_boot_index(root.get("boot_index", 0)),
                source="image", resource_id=image_id, data=used_bytes(path), image_meta={}))
            paths.append(path)
        for bdm in volumes:
            data = (bdm.get("connection_info") or {}).get("data") or {}
            device_path = data.get("device_path")
            if not device_path:
                raise hypervisor.SpawnError(
                    f"volume {bdm.volume_id}: no device_path in its connection_info")
            path = Path(device_path)
            devices.append(hypervisor.AttachedDevice(
                kind="cdrom" if bdm.get("device_type") == "cdrom" else "disk",
                bus=bdm.get("disk_bus"), boot_index=_boot_index(bdm.get("boot_index")),
                source="volume", resource_id=bdm.volume_id, data=used_bytes(path),
                image_meta={}))
            paths.append(path)
        return devices, paths

    def _local_disk(self, context: Any, instance: Any, image_id: str, workdir: Path) -> Path:
        disk = workdir / "disk"
        if disk.exists():
            return disk
        download = workdir / "image.download"
        self._image_api.download(context, image_id, dest_path=str(download))
        with download.open("rb") as fh:
            is_qcow2 = fh.read(4) == QCOW2_MAGIC
        if is_qcow2:
            _qemu_img("convert", "-O", "raw", str(download), str(disk))
            download.unlink()
        else:
            download.replace(disk)
        root_bytes = int(instance.flavor.root_gb or 0) * GIB
        if disk.stat().st_size < root_bytes:
            os.truncate(disk, root_bytes)  # sparse
        return disk

    # ---------------------------------------------------------------- the guest

    def _start_guest(self, vm: _Vm, public_key: str | None, metadata: guest.Metadata) -> None:
        speed, scenarios = read_control()
        scenario = scenario_for(vm.name, scenarios)
        vm.boots += 1
        vm.stop = threading.Event()
        vm.powered_off = False
        assert vm.machine is not None
        events = guest.boot(vm.machine, public_key=public_key or None, scenario=scenario,
                            rng=random.Random(f"{vm.uuid}:{vm.boots}"), metadata=metadata,
                            unread_hold=guest.SYSPREP_HOLD_WALL_FLOOR * speed)
        vm.thread = threading.Thread(target=self._play, args=(vm, events, speed),
                                     name=f"guest-{vm.uuid}", daemon=True)
        vm.thread.start()

    def _stop_guest(self, vm: _Vm) -> None:
        vm.stop.set()
        thread = vm.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        vm.thread = None

    def _play(self, vm: _Vm, events: Any, speed: float) -> None:
        began = time.monotonic()
        try:
            for event in events:
                delay = began + event.at / speed - time.monotonic()
                if vm.stop.wait(max(0.0, delay)):
                    return
                if isinstance(event.action, guest.AwaitConsoleRead):
                    # A hold that waits for sysprep:start to be read moves what follows later.
                    due = began + event.at / speed
                    if self._await_read(vm, began + event.action.since / speed,
                                        began + event.action.latest / speed):
                        return
                    began += max(0.0, time.monotonic() - due)
                    continue
                if self._apply(vm, event.action):
                    return
        except Exception:  # a guest bug must not take the compute service down
            LOG.exception("simulated guest of %s crashed", vm.uuid)

    def _await_read(self, vm: _Vm, written: float, latest: float) -> bool:
        """Wait until the console was read since ``written`` or ``latest`` came (monotonic
        times); True when the guest was stopped meanwhile."""
        while vm.console_read_at < written and time.monotonic() < latest:
            if vm.stop.wait(0.02):
                return True
        return False

    def _apply(self, vm: _Vm, action: Any) -> bool:
        """Carry out one guest action; True when the guest has powered off."""
        if isinstance(action, guest.ConsoleOutput):
            with vm.console.open("a", encoding="utf-8") as fh:
                fh.write(action.text + "\n")
        elif isinstance(action, guest.WriteDisk):
            self._write_boot_disk(vm, action.data)
        elif isinstance(action, guest.PostPassword):
            self._post_password(vm, action.encrypted)
        elif isinstance(action, guest.PowerOff):
            self._powered_off(vm)
            return True
        return False

    def _write_boot_disk(self, vm: _Vm, data: bytes) -> None:
        index = hypervisor.boot_disk_index(vm.machine) if vm.machine else None
        if index is None:
            LOG.warning("guest %s wrote a disk it does not have", vm.uuid)
            return
        with vm.paths[index].open("r+b") as fh:
            fh.write(data)
            if vm.written > len(data):
                fh.write(b"\x00" * (vm.written - len(data)))
            fh.flush()
            os.fsync(fh.fileno())
        vm.written = len(data)

    def _post_password(self, vm: _Vm, encrypted: str) -> None:
        ctx = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(ctx, vm.uuid, expected_attrs=["system_metadata"])
        if password.extract_password(instance):
            return  # the metadata service answers a second post 409 (handle_password)
        instance.system_metadata.update(password.convert_password(ctx, encrypted))
        instance.save()

    def _powered_off(self, vm: _Vm) -> None:
        vm.powered_off = True
        fake_instance = self.instances.get(vm.uuid)
        if fake_instance is not None:
            fake_instance.state = power_state.SHUTDOWN
        self.emit_event(virtevent.LifecycleEvent(vm.uuid, virtevent.EVENT_LIFECYCLE_STOPPED))


def _boot_data_length(machine: hypervisor.Machine) -> int:
    """The bytes already on the boot disk: a shorter record written over them must zero the
    rest, as on a block device (a refresh's target holds its parent image's record)."""
    index = hypervisor.boot_disk_index(machine)
    return len(machine.devices[index].data) if index is not None else 0


def _metadata(instance: Any) -> guest.Metadata:
    """What cloudbase-init in the guest can read, as real Nova hands it over: the user data
    as stored (the API keeps the base64 text; nova/api/metadata/base.py decodes it for the
    metadata service and the config drive) and a config drive when
    ``nova.virt.configdrive.required_by`` says so (libvirt builds one then). The metadata
    service counts as reachable: NeutronFixture plugs no VIF, so ``network_info`` is empty
    here even for a server on a network."""
    raw = instance.user_data
    return guest.Metadata(user_data=base64.b64decode(raw) if raw else None,
                          config_drive=bool(configdrive.required_by(instance)))


def _hw_props(instance: Any) -> dict[str, str]:
    """The image properties Nova keeps for the instance (imageRef's, or the boot volume's
    ``volume_image_metadata``), as strings, the way the simulator reads them."""
    meta = instance.system_metadata or {}
    return {k[len("image_"):]: str(v) for k, v in meta.items()
            if k.startswith("image_") and v is not None}


def _boot_index(value: Any) -> int | None:
    if value is None:
        return None
    return int(value)


def _qemu_img(*args: str) -> None:
    result = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise exception.NovaException(f"qemu-img {args[0]} failed: {result.stderr.strip()}")
