"""The job worker's pure parts: which rows a gateway error names, what each such row's line says, and which
shards an index of an Indexed Job takes. (The worker itself runs against the real stack in
tests/integration/test_jobs.py.)"""

from __future__ import annotations

import pytest

from modelops.jobs.worker import Slice, _item_index, _row_error


def test_the_refused_item_is_found_in_the_message_or_the_details() -> None:
    validation = {
        "code": "validation_error",
        "message": "texts.2: String should have at least 1 character",
        "details": [{"field": "texts.2", "message": "String should have at least 1 character"}],
    }
    assert _item_index(validation, "texts", 4) == 2
    assert (
        _item_index({"code": "unsupported_media_type", "message": "images[1]: not a supported image"}, "images", 3) == 1
    )
    assert _item_index({"code": "x", "message": "texts.9: too long"}, "texts", 4) is None  # not in this request
    assert _item_index({"code": "model_not_ready", "message": "no worker"}, "texts", 4) is None


def test_a_row_error_keeps_the_code_and_drops_the_request_item_name() -> None:
    error = {
        "code": "validation_error",
        "message": "texts.0: String should have at least 1 character",
        "details": [
            {"field": "texts.0", "message": "String should have at least 1 character"},
            {"field": "texts.1", "message": "String should have at most 2000 characters"},
        ],
    }
    assert _row_error(error, "texts", 1) == {
        "code": "validation_error",
        "message": "String should have at most 2000 characters",
    }
    image = {"code": "corrupt_image", "message": "images[0]: the image is truncated or corrupt"}
    assert _row_error(image, "images", 0) == {"code": "corrupt_image", "message": "the image is truncated or corrupt"}


def test_the_indexes_of_an_indexed_job_share_the_shards_without_overlap() -> None:
    parts = [Slice(index, 3) for index in range(3)]
    taken = [[shard for shard in range(10) if shard in part] for part in parts]
    assert taken == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ValueError, match=r"index 3 is not in 0\.\.2"):
        Slice(3, 3)
