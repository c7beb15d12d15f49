"""Install media as they come: evaluation ISOs, another release or architecture than the spec.

Preflight reads the ISO's install.wim XML from Glance (range reads) and the simulated guest's
Setup selects the image by `/IMAGE/NAME`, as Windows Setup does.
"""

from __future__ import annotations

import pytest

from osbuild_sim.media import windows_iso
from tests.e2e.conftest import Cloud

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow

_NOPROMPT = {"osbuild_uefi_noprompt": "true"}


def test_a_client_evaluation_iso_installs_its_evaluation_image(cloud: Cloud) -> None:
    # Client evaluation media call the image `Windows 11 Enterprise Evaluation`: the retail
    # name would leave Setup at its edition choice until the WinPE timeout.
    cloud.upload_iso("win11-eval.iso", windows_iso("11", noprompt=True, evaluation=True,
                                                   editions=("Enterprise",)), **_NOPROMPT)
    spec = cloud.spec("win11-enterprise.yaml",
                      windows={"iso_image": "win11-eval.iso", "product_key": None},
                      verify={"enabled": False})
    run = cloud.build(spec)
    assert run.exit_code == 0, run.why
    record = cloud.image_record(run.success["image_id"])
    assert record["image_name"] == "Windows 11 Enterprise Evaluation"
    assert record["edition_id"] == "EnterpriseEval"


def test_evaluation_media_with_a_product_key_is_refused_before_boot(cloud: Cloud) -> None:
    iso = cloud.upload_iso("win11-eval.iso", windows_iso("11", noprompt=True, evaluation=True,
                                                         editions=("Enterprise",)), **_NOPROMPT)
    run = cloud.build(cloud.spec("win11-enterprise.yaml", windows={"iso_image": "win11-eval.iso"}))
    assert run.exit_code == 2, run.why
    assert ("windows.product_key: 'win11-eval.iso' is evaluation media (Windows 11 Enterprise "
            "Evaluation), which takes no product key; omit it") in run.why
    assert not run.named("stage")
    assert cloud.leftovers(keep={iso}) == []


def test_server_core_evaluation_media_with_a_product_key_is_refused_too(cloud: Cloud) -> None:
    # Server evaluation media keep the retail image names; only the edition id tells, and
    # Server Core's ends in "Cor" (ServerStandardEvalCor), which a check for a trailing
    # "Eval" missed: Setup would have refused the key at the WinPE pass.
    iso = cloud.upload_iso("ws2022-eval.iso", windows_iso(
        "2022", evaluation=True, editions=("SERVERSTANDARDCORE",)))
    run = cloud.build(cloud.spec(windows={"iso_image": "ws2022-eval.iso",
                                          "edition": "SERVERSTANDARDCORE",
                                          "product_key": "kms"}))
    assert run.exit_code == 2, run.why
    assert ("windows.product_key: 'ws2022-eval.iso' is evaluation media (Windows Server 2022 "
            "SERVERSTANDARDCORE), which takes no product key; omit it") in run.why
    assert not run.named("stage")
    assert cloud.leftovers(keep={iso}) == []


def test_an_iso_of_another_release_is_refused_listing_what_it_holds(cloud: Cloud) -> None:
    iso = cloud.upload_iso("ws2019.iso", windows_iso("2019", editions=("SERVERSTANDARD",)))
    run = cloud.build(cloud.spec(windows={"iso_image": "ws2019.iso"}))
    assert run.exit_code == 2, run.why
    assert ("windows.version: 2022, but 'ws2019.iso' is Windows Server 2019 media; its install "
            "image holds: Windows Server 2019 SERVERSTANDARD (index 1, 10.0.17763, x64, en-US)"
            in run.why)
    assert "windows.edition" not in run.why  # one problem, said once
    assert not run.named("stage")
    assert cloud.leftovers(keep={iso}) == []


def test_an_iso_of_another_architecture_is_refused(cloud: Cloud) -> None:
    iso = cloud.upload_iso("ws2022-arm.iso", windows_iso("2022", editions=("SERVERSTANDARD",),
                                                         arch=12))
    run = cloud.build(cloud.spec(windows={"iso_image": "ws2022-arm.iso"}))
    assert run.exit_code == 2, run.why
    assert ("windows.iso_image: 'ws2022-arm.iso' is arm64 media; osbuild builds x64 (amd64) "
            "images. Its install image holds: SERVERSTANDARD (index 1, 10.0.20348, arm64, en-US)"
            in run.why)
    assert cloud.leftovers(keep={iso}) == []


def test_an_iso_that_is_not_windows_media_is_refused_listing_its_root(cloud: Cloud) -> None:
    from osbuild_sim.media import virtio_iso

    iso = cloud.upload_iso("swapped.iso", virtio_iso())  # the virtio-win ISO by mistake
    run = cloud.build(cloud.spec(windows={"iso_image": "swapped.iso"}))
    assert run.exit_code == 2, run.why
    assert ("windows.iso_image: 'swapped.iso' is not Windows install media (no "
            "sources/install.wim or sources/install.esd); it holds: Balloon, fwcfg, "
            "guest-agent, NetKVM, pvpanic, qxldod, viofs, vioinput, viorng, vioscsi, "
            "vioserial, viostor, ..." in run.why)
    assert cloud.leftovers(keep={iso}) == []


def test_a_locale_the_media_lack_is_refused_before_boot(cloud: Cloud) -> None:
    # Found trying the CLI from outside: `locale: de-DE` on the stock en-US media built
    # (the simulated Setup takes any UILanguage) where Windows Setup waits on its language
    # screen until the winpe stage times out an hour later (docs/guest.md, "First checks").
    # Preflight reads the image's languages already: it refuses, naming what the media have.
    run = cloud.build(cloud.spec(windows={"locale": "de-DE"}))
    assert run.exit_code == 2, run.why
    assert ("windows.locale: de-DE is not a language of 'windows-server-2022-x64.iso' "
            "(Windows Server 2022 SERVERSTANDARD has en-US)" in run.why)
    assert not run.named("stage")
    assert cloud.leftovers() == []
