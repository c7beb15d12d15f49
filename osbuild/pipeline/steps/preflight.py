"""Preflight: resolve everything the build names and check quotas, creating nothing.

Every problem is collected and reported at once (exit 2) before the first resource exists.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import asdict, astuple, dataclass
from typing import Any

from osbuild import naming
from osbuild.cloud import compute
from osbuild.cloud import images as image_api
from osbuild.cloud import network as network_api
from osbuild.cloud import volumes as volume_api
from osbuild.cloud.connect import token_roles
from osbuild.cloud.image_ranges import ImageRanges
from osbuild.cloud.retry import DuplicateResource
from osbuild.errors import PreflightError, describe
from osbuild.media import wim
from osbuild.media import windows as windows_catalog
from osbuild.media.virtio_iso import VirtioContents, read_virtio_iso
from osbuild.pipeline.context import BuildContext
from osbuild.pipeline.events import EventName
from osbuild.pipeline.resumable import Resumable, Saved, StartOver
from osbuild.pipeline.runner import Step
from osbuild.pipeline.steps import verify_image
from osbuild.unattended.fingerprint import image_checksum

log = logging.getLogger(__name__)
GIB = 1024**3
UEFI_PREPARED_PROPERTY = "osbuild_uefi_noprompt"


@dataclass(frozen=True)
class IsoImage:
    id: str
    name: str
    size: int
    checksum: str
    properties: dict[str, Any]

    @property
    def volume_gb(self) -> int:
        return max(1, math.ceil(self.size / GIB))


@dataclass(frozen=True)
class Resolved:
    windows_iso: IsoImage | None  # None: a refresh, which attaches no ISO
    virtio_iso: IsoImage | None
    flavor_id: str
    flavor_name: str
    flavor_vcpus: int
    flavor_ram: int
    network_id: str | None
    volume_type: str | None
    availability_zone: str | None
    # The `/IMAGE/NAME` found on the ISO (an evaluation ISO's differs); None: not read.
    install_image: str | None = None

    def volume_gigabytes(self, config_gb: int, target_gb: int) -> int:
        isos = sum(iso.volume_gb for iso in (self.windows_iso, self.virtio_iso) if iso)
        return isos + config_gb + target_gb

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Resolved:
        fields = dict(data)
        windows, virtio = fields.pop("windows_iso"), fields.pop("virtio_iso")
        return cls(windows_iso=IsoImage(**windows) if windows else None,
                   virtio_iso=IsoImage(**virtio) if virtio else None, **fields)


class Preflight(Resumable):
    name = "preflight"

    def run(self, ctx: BuildContext) -> None:
        resolved, needs, problems = self.examine(ctx)
        if resolved is not None and needs is not None:
            problems.extend(quota_problems(ctx, needs))
            ctx.resolved = resolved
        if problems:
            raise PreflightError(problems)  # the summary names the family

    def record(self, ctx: BuildContext) -> dict[str, Any]:
        return asdict(ctx.resolved) if ctx.resolved is not None else {}

    def resume(self, ctx: BuildContext, saved: Saved) -> Step | None:
        if not saved.done or not saved.record:
            raise StartOver("the build had not uploaded its config ISO; starting it over")
        ctx.resolved = Resolved.from_record(dict(saved.record))
        return None

    def examine(self, ctx: BuildContext) -> tuple[Resolved | None, Needs | None, list[str]]:
        """Resolve what the spec names, and what the build will hold at its peak; no quota."""
        spec = ctx.spec
        conn = ctx.conn
        problems: list[str] = []
        refresh = ctx.parent is not None

        win = virtio = None
        parent_image: image_api.Image | None = None
        # A refresh attaches neither ISO and installs nothing from them, so it neither finds
        # them nor reads them (the install.wim and driver-folder reads are this step's
        # slowest calls). `auto` has already compared their checksums with the parent's
        # (osbuild.images.refresh.choose, before the build), and the refreshed image keeps
        # the parent's fingerprint and ISO provenance; `always` refreshes whatever they are.
        if not refresh:
            win = self._iso(ctx, spec.windows.iso_image, "windows.iso_image", problems)
            virtio = self._iso(ctx, spec.virtio.iso_image, "virtio.iso_image", problems)
        else:
            parent_image = self._parent_image(ctx, problems)
        if win and spec.windows.firmware == "uefi":
            prepared = str(win.properties.get(UEFI_PREPARED_PROPERTY, "")).lower() == "true"
            if not prepared:
                cloud = f" --os-cloud {ctx.os_cloud}" if ctx.os_cloud else ""
                problems.append(
                    f"windows.iso_image: {win.name!r} was not prepared for prompt-less UEFI "
                    f"boot (its EFI boot image waits for a key press); run: osbuild media "
                    f"prepare-uefi --image {win.name}{cloud} and use the new image"
                )

        install_image = self._install_image(ctx, win, problems) if win else None
        if virtio:
            problems.extend(self._virtio_problems(ctx, virtio))

        flavor = self._find(ctx, lambda: compute.find_flavor(conn, spec.builder.flavor,
                                                             cancel=ctx.cancel.event),
                            f"builder.flavor: no flavor {spec.builder.flavor!r}", problems)
        if flavor is not None:
            min_ram = windows_catalog.RELEASE[spec.windows.version].min_ram_mb
            if (flavor.ram or 0) < min_ram:
                problems.append(
                    f"builder.flavor: {flavor.name} has {flavor.ram} MB RAM; Windows "
                    f"{spec.windows.version} Setup needs at least {min_ram} MB"
                )
            # The refresh builder boots a volume made from the parent: Nova wants the
            # parent's min_ram (nova/block_device.py get_image_metadata_from_volume).
            if parent_image is not None and (flavor.ram or 0) < parent_image.min_ram:
                problems.append(
                    f"builder.flavor: {flavor.name} has {flavor.ram} MB RAM, less than the "
                    f"min_ram ({parent_image.min_ram} MB) of parent image {parent_image.name} "
                    f"({parent_image.id}), which the refresh builder boots"
                )
            # A refresh's builder boots a volume whatever builder.target says.
            if (spec.builder.target == "local" and not refresh
                    and (flavor.disk or 0) < spec.builder.disk_gb):
                problems.append(
                    f"builder.flavor: {flavor.name} has a {flavor.disk} GB root disk; the "
                    f"local target needs builder.disk_gb = {spec.builder.disk_gb} GB"
                )

        network_id = None
        if spec.builder.network:
            network = self._find(
                ctx, lambda: network_api.find_network(conn, spec.builder.network,
                                                      cancel=ctx.cancel.event),
                f"builder.network: no network {spec.builder.network!r}", problems)
            network_id = network.id if network is not None else None

        if spec.builder.volume_type:
            self._find(ctx, lambda: volume_api.type_exists(conn, spec.builder.volume_type,
                                                           cancel=ctx.cancel.event) or None,
                       f"builder.volume_type: no volume type {spec.builder.volume_type!r}",
                       problems)
        if spec.builder.availability_zone:
            zones = self._zones(ctx)
            if zones is not None and spec.builder.availability_zone not in zones:
                problems.append(
                    f"builder.availability_zone: no availability zone "
                    f"{spec.builder.availability_zone!r} (have: {', '.join(sorted(zones))})"
                )

        problems.extend(verify_image.preflight_problems(ctx, flavor))
        self._warn_public_visibility(ctx)
        self._warn_name_of_another_family(ctx)

        if flavor is not None and ((win and virtio) or refresh):
            resolved = Resolved(
                windows_iso=win,
                virtio_iso=virtio,
                flavor_id=flavor.id,
                flavor_name=flavor.name,
                flavor_vcpus=flavor.vcpus,
                flavor_ram=flavor.ram,
                network_id=network_id,
                volume_type=spec.builder.volume_type,
                availability_zone=spec.builder.availability_zone,
                install_image=install_image,
            )
            return resolved, build_needs(ctx, resolved, flavor), problems
        return None, None, problems

    # ------------------------------------------------------------------ resolving

    def _find(self, ctx: BuildContext, lookup: Any, missing: str, problems: list[str]) -> Any:
        """``lookup()`` (a call that retries) found something, or ``missing`` is a problem."""
        try:
            found = lookup()
        except DuplicateResource:
            problems.append(missing.replace("no ", "several resources named ", 1)
                            + " (use the ID)")
            return None
        if found is None:
            problems.append(missing)
        return found

    def _iso(self, ctx: BuildContext, name_or_id: str, field: str,
             problems: list[str]) -> IsoImage | None:
        image = self._find(ctx, lambda: image_api.find_image(ctx.conn, name_or_id,
                                                             cancel=ctx.cancel.event),
                           f"{field}: no image {name_or_id!r} in Glance", problems)
        if image is None:
            return None
        ok = True
        if image.status.lower() != "active":
            problems.append(f"{field}: image {image.name!r} is {image.status}, not active")
            ok = False
        if image.disk_format.lower() != "iso":
            problems.append(f"{field}: image {image.name!r} has disk_format "
                            f"{image.disk_format}, not iso")
            ok = False
        if not ok:
            return None
        props = dict(image.properties)
        return IsoImage(
            id=image.id,
            name=image.name,
            size=image.size,
            checksum=image_checksum(image),
            properties=props,
        )

    def _warn_public_visibility(self, ctx: BuildContext) -> None:
        """Glance's default policy lets only admins make an image public (glance/policies/
        image.py ``publicize_image``), and the promotion is the last step; a cloud may grant
        it to other roles, so this is a warning, not a refusal."""
        if ctx.spec.image.visibility != "public":
            return
        roles = token_roles(ctx.conn)
        if roles is None or "admin" in roles:
            return
        ctx.emit(EventName.WARNING, message=(
            "image.visibility: public: Glance lets only admins make an image public (policy "
            f"publicize_image) and this user's roles are {', '.join(sorted(roles)) or 'none'}; "
            "unless the cloud's policy allows it, the promotion will be refused (403) after "
            "the build: use shared with image.members, or community"))

    def _warn_name_of_another_family(self, ctx: BuildContext) -> None:
        """Glance allows duplicate names, so a spec copied with a new `name` but the old
        `image.name` publishes the other family's name: lookups by name (`openstack server
        create --image NAME`, `osbuild images verify NAME`) then find two. A warning: the
        promotion may come on another day, and the name may be meant to be shared."""
        spec = ctx.spec
        name = spec.image_name_for(ctx.build_id)
        others = [image for image in image_api.images(ctx.conn, name=name,
                                                      cancel=ctx.cancel.event)
                  if image.properties.get(naming.PROP_FAMILY) != spec.name]
        if not others:
            return
        owners = ", ".join(f"{image.id} ({_made_by(image)})" for image in others[:3])
        ctx.emit(EventName.WARNING, message=(
            f"image.name: {name!r} (as it would be named today) is already the name of "
            f"image {owners}: lookups by name will find both; put {{name}} in image.name"))

    def _parent_image(self, ctx: BuildContext, problems: list[str]) -> image_api.Image | None:
        """The image a refresh copies, which must still be there and active: it was chosen
        before render and preflight, and someone may have deleted or deactivated it since
        (Cinder would then refuse the target volume after the config ISO was uploaded)."""
        parent = ctx.require(ctx.parent, "parent")
        image = image_api.find_image(ctx.conn, parent.image_id, cancel=ctx.cancel.event)
        what = f"refresh: parent image {parent.name} ({parent.image_id})"
        if image is None:
            problems.append(f"{what} is no longer in Glance (deleted since the refresh was "
                            "chosen); run again to choose anew")
            return None
        if image.status.lower() != "active":
            problems.append(f"{what} is {image.status}, not active")
            return None
        return image

    def _install_image(self, ctx: BuildContext, win: IsoImage,
                       problems: list[str]) -> str | None:
        """The `/IMAGE/NAME` the answer file selects on this ISO, checked against the spec:
        the release, the architecture and the edition must be on it, else Setup waits at its
        edition choice (or refuses) until the 1-hour WinPE timeout. Read from install.wim's
        XML through Glance; None when the ISO cannot be read (the spec's name is used)."""
        windows = ctx.spec.windows
        try:
            images = ctx.call(_iso_images, ctx.conn, win)
        except wim.NotWindowsMedia as exc:
            shown = ", ".join(exc.top_level[:12]) + (", ..." if len(exc.top_level) > 12 else "")
            problems.append(f"windows.iso_image: {win.name!r} is not Windows install media "
                            f"({exc}); it holds: {shown or 'nothing'}")
            return None
        except Exception as exc:  # no Range support, not an ISO, an odd install image
            log.debug("could not read the editions of %s", win.id, exc_info=True)
            images = None
            why = describe(exc)
        else:
            why = "no install.wim metadata found"
        if images is None:
            ctx.emit(EventName.INFO, message=f"windows.edition: could not read the editions on "
                     f"{win.name!r} from Glance ({why}); `osbuild media inspect ISO` lists "
                     "them from a copy of the ISO")
            return None
        holds = "; ".join(_described(windows.version, image) for image in images) or "none"
        foreign = sorted({image.arch for image in images if image.arch not in (None, "x64")})
        if foreign and len(foreign) == len({image.arch for image in images}):
            problems.append(f"windows.iso_image: {win.name!r} is {'/'.join(foreign)} media; "
                            f"osbuild builds x64 (amd64) images. Its install image holds: "
                            f"{holds}")
            return None
        releases = sorted({release for image in images if (release := _release(image))})
        if releases and windows.version not in releases:
            what = ", ".join(_release_name(release) for release in releases)
            problems.append(f"windows.version: {windows.version}, but {win.name!r} is "
                            f"{what} media; its install image holds: {holds}")
            return None
        wanted = [name.casefold() for name in windows.edition_info.image_names]
        for image in images:
            if image.name.casefold() in wanted and image.arch in (None, "x64"):
                if image.evaluation and windows.product_key is not None:
                    # Setup refuses a key that no image of evaluation media accepts.
                    problems.append(f"windows.product_key: {win.name!r} is evaluation media "
                                    f"({image.name}), which takes no product key; omit it")
                problems += _locale_problems(windows.locale, win.name, image)
                return image.name
        problems.append(f"windows.edition: {windows.edition} is not on {win.name!r}; its "
                        f"install image holds: {holds}")
        return None

    def _virtio_problems(self, ctx: BuildContext, virtio: IsoImage) -> list[str]:
        """The drivers WinPE and the virtio stage load must have a build for this Windows
        release: an older virtio-win lacks the newest release's folders,
        and Setup would then not see the disk. Read from the ISO's directories in Glance."""
        spec = ctx.spec
        folder = windows_catalog.virtio_os_folder(spec.windows.version)
        try:
            contents = ctx.call(_virtio_contents, ctx.conn, virtio)
        except Exception as exc:
            log.debug("could not read the layout of %s", virtio.id, exc_info=True)
            ctx.emit(EventName.INFO, message=f"virtio.iso_image: could not read the driver folders "
                     f"of {virtio.name!r} from Glance ({describe(exc)}); `osbuild media "
                     "inspect ISO` lists them from a copy of the ISO")
            return []
        if contents is None:
            return [f"virtio.iso_image: {virtio.name!r} holds no virtio-win driver folders "
                    "(<driver>/<release>/amd64)"]
        problems = []
        # The virtio stage also installs vioserial and Balloon (templates/scripts).
        needed = tuple(dict.fromkeys((*spec.virtio.winpe_drivers, "vioserial", "Balloon")))
        missing = contents.missing_for(folder, needed)
        if missing:
            have = sorted({f for d in missing for f in contents.drivers.get(d, ())})
            problems.append(
                f"virtio.iso_image: {virtio.name!r} has no {folder} build of "
                f"{', '.join(missing)} (Windows {spec.windows.version}); its folders for "
                f"them: {', '.join(have) or 'none'}. Use a virtio-win release that "
                f"supports Windows {spec.windows.version}")
        if spec.virtio.guest_tools and not contents.guest_tools:
            problems.append(f"virtio.iso_image: {virtio.name!r} has no "
                            f"{windows_catalog.VIRTIO_GUEST_TOOLS}; set virtio.guest_tools: "
                            "false or use a newer virtio-win")
        if spec.virtio.qemu_ga and not contents.qemu_ga:
            problems.append(f"virtio.iso_image: {virtio.name!r} has no "
                            f"{windows_catalog.VIRTIO_QEMU_GA_MSI}; set virtio.qemu_ga: false")
        return problems

    def _zones(self, ctx: BuildContext) -> set[str] | None:
        # Listing zones may be forbidden (None); Nova will say at boot.
        return compute.availability_zones(ctx.conn, cancel=ctx.cancel.event)

# ---------------------------------------------------------------------- quotas


@dataclass(frozen=True)
class Needs:
    """What one build holds at its peak, in the units of the quotas."""

    instances: int = 0
    cores: int = 0
    ram: int = 0
    volumes: int = 0
    gigabytes: int = 0
    images: int = 0

    def __add__(self, other: Needs) -> Needs:
        return Needs(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def build_needs(ctx: BuildContext, resolved: Resolved, flavor: compute.Flavor) -> Needs:
    """The builder's server and volumes, or the verify server and its volume, whichever
    needs more: the release step deletes the builder's before the boot test starts."""
    spec = ctx.spec
    # A refresh's builder boots a copy of the parent image: a volume target of its size.
    volume_target = spec.builder.target == "volume" or ctx.parent is not None
    target_gb = spec.builder.disk_gb if volume_target else 0
    if ctx.parent is not None:
        target_gb = ctx.refresh_disk_gb
    builder = Needs(instances=1, cores=resolved.flavor_vcpus, ram=resolved.flavor_ram,
                    # the ISOs, the config ISO and the target; a refresh has no ISO
                    volumes=2 if ctx.parent else (4 if volume_target else 3),
                    gigabytes=resolved.volume_gigabytes(1, target_gb),
                    # the config ISO, the capture (and a local target's blank root), and
                    # the family claim of a build that takes the family lock
                    images=(2 if volume_target else 3) + (1 if ctx.options.lock_family else 0))
    if not spec.verify.enabled:
        return builder
    verify_flavor = flavor
    if spec.verify.flavor:
        verify_flavor = compute.find_flavor(ctx.conn, spec.verify.flavor,
                                            cancel=ctx.cancel.event) or flavor
    from_volume = spec.verify.boot_from_volume or verify_flavor.disk < ctx.image_min_disk_gb
    verify = Needs(instances=1, cores=verify_flavor.vcpus, ram=verify_flavor.ram,
                   volumes=1 if from_volume else 0,
                   gigabytes=ctx.image_min_disk_gb if from_volume else 0)
    # The captured image stays through the boot test: builder.images counts it.
    return Needs(*(max(a, b) for a, b in zip(astuple(builder), astuple(verify), strict=True)))


def peak_of(needs: list[Needs], at_once: int) -> Needs:
    """The most that ``at_once`` of these builds can hold together, resource by resource."""
    columns = zip(*(astuple(n) for n in needs), strict=True)
    return Needs(*(sum(sorted(column, reverse=True)[:at_once]) for column in columns))


def quota_problems(ctx: BuildContext, needs: Needs, *, who: str = "the build") -> list[str]:
    """One line per quota that ``needs`` would exceed, counting what the project uses now."""
    problems: list[str] = []
    absolute = compute.absolute_limits(ctx.conn, cancel=ctx.cancel.event)
    for what, need, max_key, used_key in (
            ("instances", needs.instances, "maxTotalInstances", "totalInstancesUsed"),
            ("cores", needs.cores, "maxTotalCores", "totalCoresUsed"),
            ("ram", needs.ram, "maxTotalRAMSize", "totalRAMUsed")):
        problems.extend(_check(absolute, "compute", what, need, max_key, used_key, who))
    absolute = volume_api.absolute_limits(ctx.conn, cancel=ctx.cancel.event)
    problems.extend(_check(absolute, "block storage", "volumes", needs.volumes,
                           "maxTotalVolumes", "totalVolumesUsed", who))
    problems.extend(_check(absolute, "block storage", "gigabytes", needs.gigabytes,
                           "maxTotalVolumeGigabytes", "totalGigabytesUsed", who))
    count = image_api.usage(ctx.conn, cancel=ctx.cancel.event).get("image_count_total") or {}
    limit, used = count.get("limit"), count.get("usage")
    if isinstance(limit, int) and limit >= 0 and isinstance(used, int) \
            and used + needs.images > limit:
        problems.append(f"quota: image: {who} {_need(who)} {needs.images} images, "
                        f"{max(limit - used, 0)} of {limit} left")
    return problems


def _made_by(image: image_api.Image) -> str:
    family = image.properties.get(naming.PROP_FAMILY)
    return f"family {family}" if family else "not made by osbuild"


def _need(who: str) -> str:
    return "needs" if who == "the build" else "need"


def _value(absolute: dict[str, Any], key: str) -> int | None:
    value = absolute.get(key)
    return value if isinstance(value, int) else None


def _check(absolute: dict[str, Any], service: str, what: str, need: int,
           max_key: str, used_key: str, who: str) -> list[str]:
    limit, used = _value(absolute, max_key), _value(absolute, used_key)
    if limit is None or limit < 0 or used is None:
        return []
    if used + need > limit:
        return [f"quota: {service} {what}: {who} {_need(who)} {need}, "
                f"{max(limit - used, 0)} of {limit} left"]
    return []


def _iso_images(conn: Any, win: IsoImage) -> list[wim.WimImage] | None:
    reader = io.BufferedReader(ImageRanges(conn, win.id, win.size), buffer_size=64 * 1024)
    return wim.iso_images(reader, name=win.name)


def _virtio_contents(conn: Any, virtio: IsoImage) -> VirtioContents | None:
    reader = io.BufferedReader(ImageRanges(conn, virtio.id, virtio.size),
                               buffer_size=64 * 1024)
    return read_virtio_iso(reader, name=virtio.name)


def _locale_problems(locale: str, iso_name: str, image: wim.WimImage) -> list[str]:
    """Setup's UI language must be one the image has, else WinPE waits on its language
    screen until the winpe stage times out (docs/guest.md, "First checks")."""
    if not image.languages or locale.casefold() in {lang.casefold() for lang in image.languages}:
        return []
    return [f"windows.locale: {locale} is not a language of {iso_name!r} ({image.name} has "
            f"{', '.join(image.languages)})"]


def _edition_of(version: str, image_name: str) -> str:
    """``SERVERSTANDARD`` for `Windows Server 2022 SERVERSTANDARD`: as a spec would say it;
    an evaluation image keeps its full name (the spec names the edition, not the media)."""
    for edition in (*windows_catalog.SERVER_EDITIONS, *windows_catalog.CLIENT_EDITIONS):
        if windows_catalog.Edition(version, edition).image_name.lower() == image_name.lower():
            return edition
    return image_name


def _described(version: str, image: wim.WimImage) -> str:
    """`SERVERSTANDARD (index 2, 10.0.20348, x64, en-US)`."""
    return image.describe().replace(image.name, _edition_of(version, image.name), 1)


def _is_server_image(image: wim.WimImage) -> bool:
    return image.installation_type.startswith("Server") or image.name.startswith(
        "Windows Server")


def _release(image: wim.WimImage) -> str | None:
    if image.build is None:
        return None
    return windows_catalog.release_of_build(image.build, server=_is_server_image(image))


def _release_name(release: str) -> str:
    return f"Windows Server {release}" if windows_catalog.is_server(release) else (
        f"Windows {release}")
