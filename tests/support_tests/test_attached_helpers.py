"""Which images a request reads and which one it produces, as the attached bridge sees them."""

from __future__ import annotations

import json

from tests.support.attached import _produced_image, _referenced_images


def test_referenced_images_cover_volumes_servers_and_image_mappings() -> None:
    assert _referenced_images({"volume": {"size": 1, "imageRef": "iso-1"}}) == ["iso-1"]
    body = {
        "server": {
            "imageRef": "http://glance/v2/images/root-1",
            "block_device_mapping_v2": [
                {"source_type": "image", "uuid": "img-2", "boot_index": 0},
                {"source_type": "volume", "uuid": "vol-3", "boot_index": 1},
                {"source_type": "blank", "boot_index": -1},
            ],
        }
    }
    assert _referenced_images(body) == ["root-1", "img-2"]
    assert _referenced_images({"os-stop": None}) == []
    assert _referenced_images(None) == []


def test_produced_image_from_upload_and_create_image_answers() -> None:
    upload = json.dumps({"os-volume_upload_image": {"image_id": "new-1"}}).encode()
    assert _produced_image({"os-volume_upload_image": {}}, upload, {}) == "new-1"
    created = json.dumps({"image_id": "new-2"}).encode()
    assert _produced_image({"createImage": {"name": "x"}}, created, {}) == "new-2"
    # Before microversion 2.45 Nova answers with an empty body and a Location header.
    located = {"Location": "http://sim/image/v2/images/new-3"}
    assert _produced_image({"createImage": {"name": "x"}}, b"", located) == "new-3"
    assert _produced_image({"os-start": None}, b"", {}) is None
