"""The launchers' context protocol: a start that fails part-way is undone, then re-raised."""

from __future__ import annotations

import pytest

from tests.support.processes import Launcher


class Recording(Launcher):
    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.fail_with = fail_with
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")
        if self.fail_with is not None:
            raise self.fail_with

    def stop(self) -> None:
        self.calls.append("stop")


class OwnUndo(Recording):
    def abandon_start(self) -> None:
        self.calls.append("abandon")


def test_entering_starts_and_leaving_stops() -> None:
    launcher = Recording()
    with launcher as entered:
        assert entered is launcher
        assert launcher.calls == ["start"]
    assert launcher.calls == ["start", "stop"]


@pytest.mark.parametrize("error", [RuntimeError("port taken"), KeyboardInterrupt()])
def test_a_failed_start_is_stopped_and_its_error_goes_on(error: BaseException) -> None:
    launcher = Recording(fail_with=error)
    with pytest.raises(type(error)), launcher:
        pytest.fail("the body must not run after a failed start")
    assert launcher.calls == ["start", "stop"]


def test_a_launcher_can_undo_a_failed_start_its_own_way() -> None:
    launcher = OwnUndo(fail_with=RuntimeError("nova did not answer"))
    with pytest.raises(RuntimeError, match="nova did not answer"), launcher:
        pass
    assert launcher.calls == ["start", "abandon"]


def test_an_error_in_the_body_still_stops() -> None:
    launcher = Recording()
    with pytest.raises(ValueError), launcher:
        raise ValueError("test failed")
    assert launcher.calls == ["start", "stop"]
