"""The rotation policy on its own: which images are hidden, deleted or kept, and why."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from osbuild.images import Decision, FamilyImage, RotationPolicy, plan

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def image(day: int, *, current: bool = False, verify: str = "passed", hidden: bool = True,
          **changes: object) -> FamilyImage:
    """An image built on November ``day``; its version sorts by day."""
    base = FamilyImage(
        id=f"img-{day:02d}", name=f"fam-{day:02d}", family="fam",
        version=f"202611{day:02d}t000000-aaaaaa", build_id=f"202611{day:02d}t000000-aaaaaa",
        status="active", verify=verify, current=current, hidden=hidden and not current,
        protected=False, visibility="private",
        created_at=datetime(2026, 11, day, tzinfo=UTC), in_use=0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def actions(decisions: list[Decision]) -> dict[str, str]:
    return {d.image.id: d.action for d in decisions}


def test_superseded_images_are_hidden_and_the_oldest_deleted_beyond_keep() -> None:
    images = [image(1), image(2, hidden=False), image(3, hidden=False), image(4, current=True)]
    decided = actions(plan(images, RotationPolicy(keep=3, superseded="hide"), NOW))
    assert decided == {"img-04": "keep", "img-03": "hide", "img-02": "hide", "img-01": "delete"}


def test_decisions_come_newest_first_with_reasons() -> None:
    decisions = plan([image(1), image(2, current=True)], RotationPolicy(keep=1), NOW)
    assert [d.image.id for d in decisions] == ["img-02", "img-01"]
    assert decisions[0].reason == "current"
    assert "beyond the newest 1" in decisions[1].reason


def test_superseded_delete_removes_older_images_at_once() -> None:
    images = [image(1), image(2, current=True)]
    decided = actions(plan(images, RotationPolicy(keep=5, superseded="delete"), NOW))
    assert decided == {"img-02": "keep", "img-01": "delete"}


def test_newer_non_current_image_is_not_superseded() -> None:
    # After a rollback the newer image is hidden, not deleted: it is not older than current.
    images = [image(1, current=True), image(2, hidden=False)]
    decided = actions(plan(images, RotationPolicy(keep=5, superseded="delete"), NOW))
    assert decided == {"img-01": "keep", "img-02": "hide"}


def test_max_age_deletes_old_images_but_not_the_current_one() -> None:
    images = [image(1, current=True), image(20), image(25)]
    policy = RotationPolicy(keep=10, max_age=timedelta(days=3).total_seconds())
    decided = actions(plan(images, policy, NOW))
    assert decided == {"img-01": "keep", "img-20": "delete", "img-25": "keep"}


def test_protected_and_in_use_images_are_never_deleted() -> None:
    images = [image(1, protected=True), image(2, in_use=2, hidden=False), image(3),
              image(4, current=True)]
    decisions = plan(images, RotationPolicy(keep=1, superseded="delete"), NOW)
    decided = actions(decisions)
    assert decided == {"img-04": "keep", "img-03": "delete", "img-02": "hide",
                       "img-01": "keep"}
    reasons = {d.image.id: d.reason for d in decisions}
    assert "protected" in reasons["img-01"]
    assert "in use by 2 server(s)" in reasons["img-02"]


def test_the_last_verified_image_is_kept() -> None:
    # The current image skipped its boot test; the one verified image must stay.
    images = [image(1, verify="passed"), image(2, verify="failed"),
              image(3, current=True, verify="skipped")]
    decisions = plan(images, RotationPolicy(keep=1, superseded="delete"), NOW)
    decided = actions(decisions)
    assert decided == {"img-03": "keep", "img-02": "delete", "img-01": "keep"}
    assert "last verified" in next(d.reason for d in decisions if d.image.id == "img-01")


def test_only_the_newest_verified_image_is_spared() -> None:
    images = [image(1), image(2), image(3, current=True, verify="skipped")]
    decided = actions(plan(images, RotationPolicy(keep=1, superseded="delete"), NOW))
    assert decided == {"img-03": "keep", "img-02": "keep", "img-01": "delete"}


def test_builds_in_progress_and_unfinished_images_are_left_alone() -> None:
    images = [image(1, current=True), image(2, verify="pending"), image(3, status="saving")]
    decided = actions(plan(images, RotationPolicy(keep=1, superseded="delete"), NOW))
    assert decided == {"img-01": "keep", "img-02": "keep", "img-03": "keep"}


def test_without_a_current_image_nothing_counts_as_superseded() -> None:
    images = [image(1, verify="failed", hidden=False), image(2, verify="failed")]
    decided = actions(plan(images, RotationPolicy(keep=5, superseded="delete"), NOW))
    assert decided == {"img-02": "keep", "img-01": "hide"}


def test_rejected_images_take_no_slot_of_keep() -> None:
    # A good (02), B rolled back from (03), C failed its boot test (04), D current (05):
    # counting B and C among the newest 3 deleted A, the only image a rollback could take.
    images = [image(2), image(3, rolled_back_at="2026-11-03T10:00:00+00:00"),
              image(4, verify="failed"), image(5, current=True)]
    decided = actions(plan(images, RotationPolicy(keep=3), NOW))
    assert decided == {"img-05": "keep", "img-04": "keep", "img-03": "keep", "img-02": "keep"}
    # Rejected images still go once they are beyond the newest `keep` of all...
    decided = actions(plan(images, RotationPolicy(keep=2), NOW))
    assert decided == {"img-05": "keep", "img-04": "keep", "img-03": "delete", "img-02": "keep"}
    # ...and good ones beyond the newest `keep` good ones.
    decided = actions(plan([image(1), *images], RotationPolicy(keep=2), NOW))
    assert decided["img-01"] == "delete" and decided["img-02"] == "keep"


def test_an_image_rolled_back_from_is_not_the_last_verified_one_kept() -> None:
    # Only A can be rolled back to: max_age may not take it, whatever B is.
    images = [image(1), image(2, rolled_back_at="2026-11-02T10:00:00+00:00"),
              image(20, current=True, verify="skipped")]
    decided = actions(plan(images, RotationPolicy(keep=5, max_age=3600.0), NOW))
    assert decided == {"img-20": "keep", "img-02": "delete", "img-01": "keep"}


def test_a_kept_image_says_which_rule_spares_it() -> None:
    # "(already hidden; not current)" for an image rolled back from while an older good
    # image went: the rule that kept it was not said (an outside tryout, s31).
    images = [image(1), image(2, rolled_back_at="2026-11-02T10:00:00+00:00"),
              image(3, verify="failed"), image(4), image(20, current=True)]
    reasons = {d.image.id: d.reason for d in plan(images, RotationPolicy(keep=4), NOW)}
    assert reasons["img-04"] == ("already hidden; not current, one of the newest 4 a "
                                 "rollback could go to")
    assert reasons["img-03"] == "already hidden; not current (verify failed), within the " \
                                "newest 4 of all"
    assert reasons["img-02"] == ("already hidden; not current (rolled back from), within the "
                                 "newest 4 of all")
