"""Nova's own libvirt driver with the two things this tier leaves out, and a domain record.

Runs inside the real Nova process (:mod:`tests.support.novaprocess`) when it is started with
``virt="libvirt"``; registered as ``nova.virt.osbuild_libvirt``. Everything a builder's
domain is made of (disks, cdroms, bus, boot order, firmware, serial console) is Nova's code
and libvirt's; what differs:

- no networking: servers are spawned with an empty network_info (NeutronFixture's ports
  are OVS-typed and no switch runs here), so no VIF is plugged or waited for;
- libvirt 9.0 refuses Nova 34's ``<loader secure=...>`` next to firmware autoselection:
  the attribute is dropped; ``<firmware><feature name='secure-boot'>`` still selects the
  Secure Boot firmware (measured, ../shared/docs/real-services.md); the Hyper-V
  enlightenments Nova adds for Windows guests are dropped too (TCG refuses them);
- each domain's live XML (libvirt's ``dumpxml``) is saved to ``OSBUILD_DOMAIN_XML_DIR``
  as ``<server name>-<server id>.xml`` once it runs, for the tests to read after the
  domain is gone;
- a stand-in for cloudbase-init's password post (the guest has no network to reach the
  metadata service): when a server's console shows ``Plugins execution done`` and it has
  a keypair, a random password encrypted with that key is stored the way Nova's metadata
  service stores a posted one, so osbuild's verify reads it through the real API.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from nova import context as nova_context
from nova import objects
from nova.api.metadata import password
from nova.network import model as network_model
from nova.virt.libvirt import driver as libvirt_driver

from osbuild_sim import guest

DOMAIN_XML_ENV = "OSBUILD_DOMAIN_XML_DIR"
DONE_LINE = b"Plugins execution done"
_LOADER_SECURE = re.compile(r"(<loader\b[^>]*?)\s+secure=['\"](?:yes|no)['\"]")
_HYPERV = re.compile(r"\s*<hyperv\b.*?</hyperv>", re.S)
_HYPERV_CLOCK = re.compile(r"\s*<timer name=['\"]hypervclock['\"][^>]*/>")


def _no_network(network_info: Any) -> Any:
    return network_model.NetworkInfo([])


def fit_for_tcg(xml: str) -> str:
    """Nova's domain XML as QEMU without KVM takes it: no ``loader secure=`` (see above),
    and no Hyper-V enlightenments, which Nova adds for ``os_type=windows`` and TCG refuses
    ("kernel doesn't allow setting HyperV VP_INDEX"; real clouds run KVM)."""
    xml = _LOADER_SECURE.sub(r"\1", xml)
    return _HYPERV_CLOCK.sub("", _HYPERV.sub("", xml))


class HypervisorDriver(libvirt_driver.LibvirtDriver):
    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        self._xml_dir = Path(os.environ.get(DOMAIN_XML_ENV) or "domain-xml")
        self._xml_dir.mkdir(parents=True, exist_ok=True)
        self._watched: dict[str, Path] = {}
        self._lock = threading.Lock()
        watcher = threading.Thread(target=self._watch_passwords, daemon=True,
                                   name="password-standin")
        watcher.start()

    # ---------------------------------------------------------------- no networking

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: Any, allocations: Any, network_info: Any = None,
              block_device_info: Any = None, power_on: bool = True,
              accel_info: Any = None) -> None:
        super().spawn(context, instance, image_meta, injected_files, admin_password,
                      allocations, _no_network(network_info), block_device_info,
                      power_on=power_on, accel_info=accel_info)
        self._save_domain_xml(instance)
        if instance.key_data:
            with self._lock:
                self._watched[instance.uuid] = Path(
                    libvirt_driver.libvirt_utils.get_instance_path(instance)) / "console.log"

    def destroy(self, context: Any, instance: Any, network_info: Any,
                block_device_info: Any = None, destroy_disks: bool = True,
                destroy_secrets: bool = True) -> None:
        with self._lock:
            self._watched.pop(instance.uuid, None)
        super().destroy(context, instance, _no_network(network_info), block_device_info,
                        destroy_disks, destroy_secrets)

    def cleanup(self, context: Any, instance: Any, network_info: Any,
                block_device_info: Any = None, destroy_disks: bool = True,
                migrate_data: Any = None, destroy_vifs: bool = True,
                destroy_secrets: bool = True) -> None:
        super().cleanup(context, instance, _no_network(network_info), block_device_info,
                        destroy_disks, migrate_data, destroy_vifs, destroy_secrets)

    def power_on(self, context: Any, instance: Any, network_info: Any,
                 block_device_info: Any = None, accel_info: Any = None,
                 share_info: Any = None) -> None:
        super().power_on(context, instance, _no_network(network_info), block_device_info,
                         accel_info, share_info)

    def reboot(self, context: Any, instance: Any, network_info: Any, reboot_type: Any,
               block_device_info: Any = None, bad_volumes_callback: Any = None,
               accel_info: Any = None, share_info: Any = None) -> None:
        super().reboot(context, instance, _no_network(network_info), reboot_type,
                       block_device_info, bad_volumes_callback, accel_info, share_info)

    def _get_guest_xml(self, *args: Any, **kwargs: Any) -> str:
        return fit_for_tcg(super()._get_guest_xml(*args, **kwargs))

    # ---------------------------------------------------------------- domain record

    def _save_domain_xml(self, instance: Any) -> None:
        guest = self._host.get_guest(instance)
        xml = guest.get_xml_desc()
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", instance.display_name or "server")
        target = self._xml_dir / f"{name}-{instance.uuid}.xml"
        partial = target.with_suffix(".part")
        partial.write_text(xml)
        partial.replace(target)

    # ---------------------------------------------------------------- password stand-in

    def _watch_passwords(self) -> None:
        while True:
            time.sleep(1.0)
            with self._lock:
                watched = dict(self._watched)
            for uuid, console in watched.items():
                try:
                    if DONE_LINE not in console.read_bytes():
                        continue
                    self._post_password(uuid)
                except Exception:  # the console file appears late: look again
                    continue
                with self._lock:
                    self._watched.pop(uuid, None)

    @staticmethod
    def _post_password(uuid: str) -> None:
        ctx = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(ctx, uuid, expected_attrs=["system_metadata"])
        key = serialization.load_ssh_public_key(instance.key_data.encode())
        encrypted = key.encrypt(guest.cloudbase_init_password().encode(),  # type: ignore[union-attr]
                                padding.PKCS1v15())
        instance.system_metadata.update(
            password.convert_password(ctx, base64.b64encode(encrypted).decode()))
        instance.save()
