"""The HTTP protocol factory: bound to the settings' limits, and picklable for worker processes."""

from __future__ import annotations

import pickle
from pathlib import Path

from odock.settings import load_settings
from odock.web.http_protocol import HttpLimits, protocol_factory


def test_factory_carries_the_configured_limits_and_survives_pickling(tmp_path: Path) -> None:
    """`odock serve --workers N` pickles the factory into each worker: the limits travel with it."""
    settings = load_settings(
        data_dir=tmp_path,
        max_request_header_bytes=2048,
        max_request_headers=7,
        request_header_timeout_seconds=1.5,
        request_body_timeout_seconds=2.5,
    )
    factory = pickle.loads(pickle.dumps(protocol_factory(settings)))
    assert factory.keywords["limits"] == HttpLimits(2048, 7, 1.5, 2.5)
