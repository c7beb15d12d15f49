"""Quotas: several builds at once are checked together; a quota refusal mid-build says so."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Cloud

# Seconds per test (builds in the simulated cloud, subprocesses): not in `-m "not slow"`.
pytestmark = pytest.mark.slow


def test_parallel_builds_are_checked_against_quota_together(cloud: Cloud) -> None:
    # Each build alone fits (4 volumes for the builder, then 1 for the verify server booted
    # from a volume: the simulated flavors have no root disk); two at once do not.
    cloud.sim.faults.set_quota("volume", volumes=7)
    first = cloud.spec(name="family-a")
    second = cloud.spec(name="family-b")
    run = cloud.build(first, second, extra=("--parallel", "2"))
    assert run.exit_code == 2, run.why
    assert not run.named("resource.created")
    assert cloud.leftovers() == []
    quota = [line for line in run.stderr.splitlines() if "quota" in line]
    assert len(quota) == 1, run.stderr
    assert "block storage volumes" in quota[0] and "2 builds" in quota[0]
    assert "--parallel" in quota[0] and "Traceback" not in run.stderr
    # Every line of a run names its families (this one: which builds are meant).
    assert "(--parallel 2, of family-a, family-b) need 8" in quota[0]


def test_parallel_builds_that_fit_together_run(cloud: Cloud) -> None:
    cloud.sim.faults.set_quota("volume", volumes=8)
    run = cloud.build(cloud.spec(name="family-a"), cloud.spec(name="family-b"),
                      extra=("--parallel", "2"))
    assert run.exit_code == 0, run.why
    assert len(run.named("build.succeeded")) == 2


def test_a_quota_refusal_mid_build_is_reported_once_as_a_quota_problem(cloud: Cloud) -> None:
    # Someone else took the last volume between preflight and our create.
    cloud.sim.faults.add_rule(service="volume", method="POST", path="/volumes$", error=413,
                              times=1)
    run = cloud.build(cloud.spec())
    assert run.exit_code == 1, run.why
    reason = run.failure["reason"]
    assert reason.startswith("volumes: over quota: "), reason
    # Once, in the cloud's own words: no "HttpException: HttpException: 413: ... for url".
    assert "HttpException" not in reason and "for url" not in reason, reason
    assert reason.count("413") == 1, reason
    assert run.failure["stage"] == "volumes"
    assert cloud.leftovers() == []


def test_the_builders_volumes_are_gone_before_the_boot_test_takes_its_own(
        cloud: Cloud) -> None:
    # 4 volumes: the builder's 4 (Windows ISO, VirtIO ISO, config ISO, target), then the
    # verify server's root volume once the release step has deleted them.
    cloud.sim.faults.set_quota("volume", volumes=4)
    run = cloud.build(cloud.spec())
    assert run.exit_code == 0, run.why
    events = [e for e in run.events if e["event"] in ("step.started", "resource.deleted")]
    verify_at = events.index(next(e for e in events if e.get("step") == "verify"))
    released = [e["name"].rsplit("-", 1)[-1] for e in events[:verify_at]
                if e["event"] == "resource.deleted" and e["kind"] == "volume"]
    assert sorted(released) == ["config", "iso", "target", "virtio"], events
    configs = [e for e in events[:verify_at]
               if e["event"] == "resource.deleted" and e["kind"] == "image"]
    assert [e["name"].rsplit("-", 1)[-1] for e in configs] == ["config"], events
    assert cloud.leftovers(keep={run.success["image_id"]}) == []


def test_one_build_needs_the_larger_of_the_builder_and_the_boot_test(cloud: Cloud) -> None:
    # 3 volumes: the boot test's one would fit, the builder's 4 do not: refused up front.
    cloud.sim.faults.set_quota("volume", volumes=3)
    run = cloud.build(cloud.spec())
    assert run.exit_code == 2, run.why
    assert "quota: block storage volumes: the build needs 4, 3 of 3 left" in run.why
    assert cloud.leftovers() == []


@pytest.mark.parametrize("service,path,body", [
    ("volume", "/volumes$", "-verify-root"),   # the test server's root volume
    ("compute", "/servers$", "-verify\""),     # the test server itself
])
def test_a_quota_refusal_at_the_boot_test_reads_over_quota(cloud: Cloud, service: str,
                                                           path: str, body: str) -> None:
    # It read "verify: check server-create failed: Quota exceeded ...", which an alert on
    # the README's "<step>: over quota: " missed (an outside tryout, session 32).
    cloud.sim.faults.add_rule(service=service, method="POST", path=path, body=body,
                              error=413, times=1)
    run = cloud.build(cloud.spec())
    assert run.exit_code == 1, run.why
    reason = run.failure["reason"]
    assert reason.startswith("verify: over quota: "), reason
    assert "HttpException" not in reason and "check " not in reason, reason
    # As after any failed boot test: the image is kept hidden (verify.on_failure: hide).
    [failed] = run.named("verify.failed")
    assert cloud.leftovers(keep={failed["image_id"]}) == []
    assert cloud.sim.connect().image.get_image(failed["image_id"]).is_hidden
