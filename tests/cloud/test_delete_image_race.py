"""delete_image when another DELETE of the same image crossed ours (real Glance's 400)."""

from __future__ import annotations

from typing import Any

import pytest
from openstack import exceptions as sdk_exc

from osbuild.cloud.delete import delete_image


class _Image:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def delete_image(self, image_id: str) -> None:
        self.calls += 1
        raise self.error


class _Conn:
    def __init__(self, error: Exception) -> None:
        self.image = _Image(error)
        self.config: Any = None


def _bad_request(text: str) -> Exception:
    return sdk_exc.BadRequestException(message=f"400: Client Error for url: x, {text}",
                                       http_status=400)


def test_a_delete_that_crossed_another_is_taken_as_done() -> None:
    conn = _Conn(_bad_request("400 Bad Request: Image status transition from deleted to "
                              "deleted is not allowed"))
    delete_image(conn, "4e18470b")  # type: ignore[arg-type]
    assert conn.image.calls == 1


def test_another_bad_request_is_still_an_error() -> None:
    conn = _Conn(_bad_request("400 Bad Request: Image is protected"))
    with pytest.raises(sdk_exc.BadRequestException):
        delete_image(conn, "4e18470b")  # type: ignore[arg-type]
