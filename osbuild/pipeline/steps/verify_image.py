"""Boot-test the new image before it may become current.

A test server boots from the image with a keypair generated here; it passes when, within the
deadline, it is ACTIVE, cloudbase-init reports on the console that it finished and which
metadata service it used, the password it posted to os-server-password decrypts with the
private key (what `nova get-password` does) and the spec's console regexes hold. The private
key and the password live only in this process's memory.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from osbuild import naming
from osbuild.cloud import compute
from osbuild.cloud import images as image_api
from osbuild.cloud import network as network_api
from osbuild.cloud import volumes as volume_api
from osbuild.cloud.clock import Deadline
from osbuild.cloud.console import ConsoleReader
from osbuild.cloud.delete import delete_keypair, delete_server, delete_volume
from osbuild.cloud.retry import HttpError, api_message, is_quota_error
from osbuild.cloud.transcript import Transcript
from osbuild.errors import BuildFailed, StageTimeout, VerifyFailed
from osbuild.images.family import VERIFY_FAILED, VERIFY_PASSED
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.create import create_behind_lookup
from osbuild.pipeline.events import EventName
from osbuild.pipeline.resumable import Resumable, Saved
from osbuild.pipeline.runner import Step
from osbuild.pipeline.steps.boot_builder import server_fault
from osbuild.pipeline.waits import wait_for_status
from osbuild.spec import format_duration

DONE_RE = re.compile(r"Plugins execution done")
METADATA_RE = re.compile(r"Metadata service loaded: '([^']+)'")
CONSOLE_LINES = 2000
# Once cloudbase-init is done, how long to wait for a late password or a late user regex
# (cloud seconds) before calling the check failed instead of waiting out the deadline.
GRACE_AFTER_DONE = 300.0
# Nova's scheduler message when no compute host fits: retried a few times, a minute apart.
NO_VALID_HOST = "No valid host"
NO_VALID_HOST_ATTEMPTS = 3
NO_VALID_HOST_PAUSE = 60.0
# The roles in the names of what the test creates: the keypair and server, the root volume.
ROLE = "verify"
ROOT_ROLE = "verify-root"
VERIFY_ROLES = (ROLE, ROOT_ROLE)


@dataclass
class _Progress:
    done: bool = False
    metadata_service: str | None = None
    password_ok: bool = False
    done_at: float | None = None
    unmatched: list[str] = field(default_factory=list)


def console_reader(ctx: BuildContext, server_id: str, transcript: Transcript) -> ConsoleReader:
    """The install watcher's reader: all of a short boot at first, then windows that follow
    what came (a fixed 2000-line window fetched the whole boot again at every poll). No
    console yet (409) or none on this cloud (404) reads as no new lines."""
    return ConsoleReader(ctx.conn, server_id, transcript, first_lines=CONSOLE_LINES,
                         cancel=ctx.cancel.event)


def read_console(ctx: BuildContext, reader: ConsoleReader) -> tuple[str, ...]:
    """The test server's new console lines; lines lost for good are a warning event (a
    larger window that loses nothing, as after a reboot, is none)."""
    read = reader.read()
    if read.lost:
        ctx.emit(EventName.WARNING, message=read.lost_message(
            "verify-console.log", "lines the checks look for"))
    return read.new_lines


def _verify_failed(check: str, detail: str) -> VerifyFailed:
    return VerifyFailed(f"check {check} failed: {detail}", stage="verify")


T = TypeVar("T")


def _create_for_test(ctx: BuildContext, create: Callable[[], T],
                     lookup: Callable[[], T | None], *, what: str,
                     check: str | None = None) -> T:
    """create_behind_lookup for the boot test. A quota refusal reads as any step's does
    (README: `<step>: over quota: ...`), so that an alert on "over quota" catches the boot
    test's too, and keeps the image as after any failed boot test; with ``check``, the
    cloud's other refusals fail that check."""
    try:
        return create_behind_lookup(ctx, create, lookup, what=what)
    except HttpError as exc:
        if is_quota_error(exc):
            raise VerifyFailed(f"over quota: {api_message(exc)}", stage="verify") from None
        if check is None:
            raise
        raise _verify_failed(check, api_message(exc)) from None


def new_keypair() -> tuple[rsa.RSAPrivateKey, str]:
    """An RSA key (cloudbase-init encrypts with RSA PKCS#1 v1.5) and its OpenSSH public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    return key, public.decode("ascii") + " osbuild-verify"


def decrypts(key: rsa.RSAPrivateKey, encrypted: str) -> bool:
    """Whether the posted password decrypts to a password; the plaintext is dropped at once.

    OpenSSL 3.2 and later answer a ciphertext made for another key with a synthetic message
    instead of a padding error (implicit rejection, against the Marvin attack), so decrypting
    is not enough: about 1 in 200 such messages is valid UTF-8. What cloudbase-init posts is
    its generated password (base64 letters and digits with a lower-case letter, an upper-case
    letter and a digit: osutils/windows.py generate_random_password) or the metadata's
    admin_pass, which Nova generates from the same classes; a synthetic message looks like
    that about 3 times in 100,000.
    """
    try:
        plain = key.decrypt(base64.b64decode(encrypted.strip(), validate=False),
                            padding.PKCS1v15())
    except (ValueError, binascii.Error):
        return False
    ok = _looks_like_a_password(plain)
    del plain
    return ok


_PASSWORD_CLASSES = (re.compile(rb"[a-z]"), re.compile(rb"[A-Z]"), re.compile(rb"[0-9]"))
_PRINTABLE = re.compile(rb"[\x21-\x7e]{3,}")  # cloudbase-init refuses shorter passwords


def _looks_like_a_password(plain: bytes) -> bool:
    return (_PRINTABLE.fullmatch(plain) is not None
            and all(cls.search(plain) for cls in _PASSWORD_CLASSES))


def preflight_problems(ctx: BuildContext,
                       builder_flavor: compute.Flavor | None = None) -> list[str]:
    """The verify section's cloud names, and whether the boot test's flavor (verify.flavor,
    else ``builder_flavor``, the one Preflight found) can boot the image, checked before
    the build (for Preflight)."""
    verify = ctx.spec.verify
    problems: list[str] = []
    if not verify.enabled:
        return problems
    flavor = builder_flavor
    if verify.flavor:
        flavor = compute.find_flavor(ctx.conn, verify.flavor, cancel=ctx.cancel.event)
        if flavor is None:
            problems.append(f"verify.flavor: no flavor {verify.flavor!r}")
    min_ram = ctx.spec.image.min_ram
    # Nova refuses a server whose flavor has less RAM than the image's min_ram, a volume
    # root's too (nova/compute/api.py _validate_flavor_image_nostatus: FlavorMemoryTooSmall).
    if flavor is not None and (flavor.ram or 0) < min_ram:
        field = "verify.flavor" if verify.flavor else "builder.flavor"
        hint = "" if verify.flavor else " (set verify.flavor, or lower image.min_ram)"
        problems.append(f"{field}: {flavor.name} has {flavor.ram} MB RAM, less than "
                        f"image.min_ram ({min_ram} MB): Nova will not boot the image on it "
                        f"for the boot test{hint}")
    if verify.network and network_api.find_network(ctx.conn, verify.network,
                                                   cancel=ctx.cancel.event) is None:
        problems.append(f"verify.network: no network {verify.network!r}")
    return problems


class VerifyImage(Resumable):
    name = "verify"

    def run(self, ctx: BuildContext) -> None:
        if not ctx.spec.verify.enabled:
            ctx.emit(EventName.VERIFY_SKIPPED)
            return
        image_id = ctx.require(ctx.image_id, "image_id")
        try:
            self._verify(ctx, image_id)
        except VerifyFailed as exc:
            self._mark(ctx, image_id, VERIFY_FAILED)
            if ctx.spec.verify.on_failure == "hide":
                image = ctx.find_resource("image", image_id)
                if image is not None:
                    image.keep_on_failure = True
            ctx.emit(EventName.VERIFY_FAILED, reason=exc.reason, image_id=image_id,
                     console=str(ctx.workdir / "verify-console.log"))
            raise
        self._mark(ctx, image_id, VERIFY_PASSED)
        # From here on the image is proven: a later failure (promote) leaves it hidden with
        # osbuild_verify=passed for `osbuild images promote`, never deletes it.
        image = ctx.find_resource("image", image_id)
        if image is not None:
            image.keep_on_failure = True

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        if not saved.done:
            # The dead run's test server, root volume and keypair are of no use (its private
            # key died with it), and the keypair's name is taken: the test starts afresh.
            ours = {naming.resource_name(ctx.build_id, role) for role in VERIFY_ROLES}
            for resource in reversed(ctx.resources):
                if resource.name in ours and not resource.done and resource.kind != "image":
                    ctx.delete_now(resource)
            return self
        image = ctx.find_resource("image", ctx.image_id) if ctx.image_id else None
        if image is not None:
            image.keep_on_failure = True  # proven: outlives a later failure, as in run
        return None

    def _mark(self, ctx: BuildContext, image_id: str, verdict: str) -> None:
        image_api.update_image(ctx.conn, image_id, cancel=ctx.cancel.event,
                               **{naming.PROP_VERIFY: verdict})
        ctx.image_properties[naming.PROP_VERIFY] = verdict

    def _verify(self, ctx: BuildContext, image_id: str) -> None:
        spec = ctx.spec
        deadline = Deadline.after(ctx.clock, spec.verify_timeout, "verify",
                                  setting=spec.verify_timeout_setting)
        key, public_key = new_keypair()
        keypair = self._import_keypair(ctx, public_key)
        server_id = self._boot_until_scheduled(ctx, image_id, keypair, deadline)
        transcript = Transcript.to_file(ctx.workdir / "verify-console.log",
                                        redact=ctx.redactor.guest_text)
        try:
            progress = self._watch(ctx, server_id, key, transcript, deadline)
        finally:
            transcript.close()
        ctx.emit(EventName.VERIFY_PASSED, image_id=image_id,
                 metadata_service=progress.metadata_service)
        # Done with the test server and key: remove them now, not at the end of the build.
        for resource in reversed(ctx.resources):
            if resource.step == self.name and not resource.done:
                ctx.delete_now(resource)

    def _boot_until_scheduled(self, ctx: BuildContext, image_id: str, keypair: str,
                              deadline: Deadline) -> str:
        """Boot the test server until it is ACTIVE; "No valid host" is retried.

        The scheduler finds no host when the cloud is momentarily full (or a host is being
        drained): a transient state, not a fault of the image.
        """
        for attempt in range(1, NO_VALID_HOST_ATTEMPTS + 1):
            server_id = self._boot(ctx, image_id, keypair, deadline, first=attempt == 1)
            fetch = partial(compute.get_server, ctx.conn, server_id, cancel=ctx.cancel.event)
            try:
                wait_for_status(
                    ctx, fetch, want="active",
                    failures=("error",), deadline=deadline, what=f"test server {server_id}",
                    on_failure=server_fault, interval=ctx.options.poll_min / 2,
                )
                return server_id
            except StageTimeout as exc:
                raise _verify_failed("server-active", exc.reason) from None
            except BuildFailed as exc:
                if (NO_VALID_HOST not in exc.reason or attempt == NO_VALID_HOST_ATTEMPTS
                        or deadline.remaining() < NO_VALID_HOST_PAUSE):
                    raise _verify_failed("server-active", exc.reason) from None
                ctx.emit(EventName.INFO, message=f"verify: no valid host for the test server "
                         f"(attempt {attempt} of {NO_VALID_HOST_ATTEMPTS}); retrying in "
                         f"{format_duration(NO_VALID_HOST_PAUSE)}")
                self._delete_attempt(ctx)
                ctx.pause(NO_VALID_HOST_PAUSE)
        raise AssertionError("unreachable")

    def _delete_attempt(self, ctx: BuildContext) -> None:
        """The failed test server and its root volume; the keypair serves the next try."""
        for resource in reversed(ctx.resources):
            if resource.step == self.name and not resource.done and resource.kind != "keypair":
                ctx.delete_now(resource)

    # ------------------------------------------------------------------ resources

    def _import_keypair(self, ctx: BuildContext, public_key: str) -> str:
        conn = ctx.conn
        name = naming.resource_name(ctx.build_id, ROLE)

        create_behind_lookup(
            ctx, lambda: compute.create_keypair(conn, name, public_key),
            lambda: compute.find_keypair(conn, name, cancel=ctx.cancel.event),
            what="the verify keypair",
        )
        ctx.track("keypair", name, name,
                  lambda: delete_keypair(conn, name))
        return name

    def _resolve(self, ctx: BuildContext) -> tuple[compute.Flavor, str | None]:
        verify = ctx.spec.verify
        builder = ctx.spec.builder
        # A re-verification (`osbuild images verify`) has no preflight: the spec's names.
        resolved = ctx.resolved
        wanted = verify.flavor or (resolved.flavor_id if resolved else builder.flavor)
        flavor = compute.find_flavor(ctx.conn, wanted, cancel=ctx.cancel.event)
        if flavor is None:
            field = "verify.flavor" if verify.flavor else "builder.flavor"
            raise _verify_failed("flavor", f"{field}: no flavor {wanted!r}")
        network_id = resolved.network_id if resolved else None
        if resolved is None and builder.network and not verify.network:
            network = network_api.find_network(ctx.conn, builder.network,
                                               cancel=ctx.cancel.event)
            if network is None:
                raise _verify_failed("network", f"builder.network: no network "
                                                f"{builder.network!r}")
            network_id = network.id
        if verify.network:
            network = network_api.find_network(ctx.conn, verify.network,
                                               cancel=ctx.cancel.event)
            if network is None:
                raise _verify_failed("network", f"verify.network: no network "
                                                f"{verify.network!r}")
            network_id = network.id
        return flavor, network_id

    def _root_volume(self, ctx: BuildContext, image_id: str, deadline: Deadline) -> str:
        conn = ctx.conn
        spec = ctx.spec
        name = naming.resource_name(ctx.build_id, ROOT_ROLE)
        args: dict[str, Any] = {
            "name": name, "size": ctx.image_min_disk_gb, "image_id": image_id,
            "metadata": naming.labels(ctx.build_id, spec.name, "verify-root"),
        }
        if spec.builder.volume_type:
            args["volume_type"] = spec.builder.volume_type
        if spec.builder.availability_zone:
            args["availability_zone"] = spec.builder.availability_zone

        def lookup() -> volume_api.Volume | None:
            found = volume_api.volumes(conn, name=name, cancel=ctx.cancel.event)
            return found[0] if found else None

        volume = _create_for_test(ctx, lambda: volume_api.create_volume(conn, **args), lookup,
                                  what="the test server's root volume")
        ctx.track("volume", volume.id, name,
                  lambda: delete_volume(conn, volume.id))
        try:
            wait_for_status(
                ctx, lambda: volume_api.get_volume(conn, volume.id,
                                                   cancel=ctx.cancel.event), want="available",
                failures=("error",), deadline=deadline, what=f"root volume {volume.id}",
            )
        except BuildFailed as exc:
            raise _verify_failed("root-volume", exc.reason) from None
        return str(volume.id)

    def _boot(self, ctx: BuildContext, image_id: str, keypair: str,
              deadline: Deadline, *, first: bool = True) -> str:
        conn = ctx.conn
        spec = ctx.spec
        flavor, network_id = self._resolve(ctx)
        # A flavor without a root disk (or a smaller one than the image needs) can only boot
        # from a volume: Nova refuses an image-backed server on it.
        from_volume = spec.verify.boot_from_volume or flavor.disk < ctx.image_min_disk_gb
        if from_volume and not spec.verify.boot_from_volume and first:
            # Normal on clouds whose flavors have no root disk: information, said once.
            ctx.emit(EventName.INFO, message=f"verify: flavor {flavor.name} has a "
                     f"{flavor.disk} GB root disk; booting the test server from a volume")
        name = naming.resource_name(ctx.build_id, ROLE)
        tag = naming.build_tag(ctx.build_id)
        args: dict[str, Any] = {
            "name": name,
            "flavor_id": flavor.id,
            "key_name": keypair,
            "networks": [{"uuid": network_id}] if network_id else "none",
            "tags": [naming.TAG, tag],
            "metadata": naming.labels(ctx.build_id, spec.name, "verify"),
        }
        if from_volume:
            # Cinder makes the root volume first: nova-compute gives up on a volume it creates
            # itself after about three minutes, too short for a large image.
            args["block_device_mapping"] = [{
                "boot_index": 0, "uuid": self._root_volume(ctx, image_id, deadline),
                "source_type": "volume", "destination_type": "volume", "device_type": "disk",
                "delete_on_termination": True,
            }]
        else:
            # The root disk mapping Nova would derive from imageRef, spelled out (as
            # novaclient does) so clouds that insist on an explicit boot index 0 accept it.
            args["image_id"] = image_id
            args["block_device_mapping"] = [{
                "boot_index": 0, "uuid": image_id, "source_type": "image",
                "destination_type": "local", "device_type": "disk",
                "delete_on_termination": True,
            }]
        if spec.builder.availability_zone:
            args["availability_zone"] = spec.builder.availability_zone

        def lookup() -> compute.Server | None:
            found = compute.servers(conn, tag=tag, name=name, cancel=ctx.cancel.event)
            return found[0] if found else None

        server = _create_for_test(ctx, lambda: compute.create_server(conn, **args), lookup,
                                  what="the test server", check="server-create")
        ctx.track("server", server.id, name,
                  lambda: delete_server(conn, server.id))
        return str(server.id)

    # ------------------------------------------------------------------ checks

    def _watch(self, ctx: BuildContext, server_id: str, key: rsa.RSAPrivateKey,
               transcript: Transcript, deadline: Deadline) -> _Progress:
        verify = ctx.spec.verify
        must = [re.compile(p, re.MULTILINE) for p in verify.console_must_match]
        must_not = [re.compile(p, re.MULTILINE) for p in verify.console_must_not_match]
        progress = _Progress(unmatched=list(verify.console_must_match))
        reader = console_reader(ctx, server_id, transcript)
        while True:
            for line in read_console(ctx, reader):
                for pattern in must_not:
                    if pattern.search(line):
                        raise _verify_failed("console_must_not_match",
                                             f"the console shows {pattern.pattern!r}")
                if not progress.done and DONE_RE.search(line):
                    progress.done = True
                    progress.done_at = ctx.clock.now()
                found = METADATA_RE.search(line)
                if found and progress.metadata_service is None:
                    progress.metadata_service = found.group(1)
            text = "\n".join(transcript.tail(len(transcript.lines) + 1))
            progress.unmatched = [p.pattern for p in must if not p.search(text)]
            if progress.done and not progress.password_ok:
                progress.password_ok = self._password(ctx, server_id, key)
            if (progress.done and progress.metadata_service and progress.password_ok
                    and not progress.unmatched):
                return progress
            self._check_server(ctx, server_id)
            self._check_time(ctx, progress, deadline)
            ctx.pause(ctx.options.poll_min)

    def _check_server(self, ctx: BuildContext, server_id: str) -> None:
        """A test server that crashed or powered off will not finish: say so at once."""
        server = compute.get_server(ctx.conn, server_id, cancel=ctx.cancel.event)
        status = server.status.upper()
        if status == "ERROR":
            raise _verify_failed("server-active", f"test server {server_id} went to error: "
                                 f"{server_fault(server)}")
        if status in ("SHUTOFF", "STOPPED", "DELETED"):
            raise _verify_failed("server-active", f"test server {server_id} is {status} "
                                 "before the checks passed")

    def _check_time(self, ctx: BuildContext, progress: _Progress, deadline: Deadline) -> None:
        grace_over = (progress.done_at is not None
                      and ctx.clock.now() - progress.done_at > GRACE_AFTER_DONE)
        if not deadline.expired and not grace_over:
            return
        if not progress.done:
            # Which setting to raise, and where to look.
            see = "; ".join(filter(None, (deadline.setting, "verify-console.log")))
            raise _verify_failed("cloudbase-init", f"the console did not show 'Plugins "
                                 f"execution done' within {format_duration(deadline.seconds)} "
                                 f"({see})")
        if not progress.metadata_service:
            raise _verify_failed("metadata-service", "cloudbase-init finished without "
                                 "loading a metadata service")
        if not progress.password_ok:
            raise _verify_failed("password", "no password was posted to os-server-password")
        raise _verify_failed("console_must_match", "the console never showed "
                             + ", ".join(repr(p) for p in progress.unmatched))

    def _password(self, ctx: BuildContext, server_id: str, key: rsa.RSAPrivateKey) -> bool:
        encrypted = compute.server_password(ctx.conn, server_id, cancel=ctx.cancel.event)
        if not encrypted:
            return False
        if not decrypts(key, encrypted):
            raise _verify_failed("password", "the password posted to os-server-password "
                                 "does not decrypt with the test keypair's private key")
        return True
