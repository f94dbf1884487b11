"""The hop measurement: an echo server and a client, pinned, exchanging bytes over loopback."""

from __future__ import annotations

import os
import shutil

import pytest
from bench.hops import measure


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_a_hop_is_measured_on_the_cores_asked() -> None:
    """Round trips take time and CPU; the report names the cores and says whether they differ."""
    cores = sorted(os.sched_getaffinity(0))
    client, server = cores[0], cores[-1]
    hop = measure(client, server, round_trips=200)
    assert (hop.client_core, hop.server_core, hop.round_trips) == (client, server, 200)
    assert hop.round_trip_us > 0
    assert hop.client_user_us >= 0
    assert hop.client_system_us >= 0
    # The client's CPU per round trip cannot exceed the wall time of a round trip.
    assert hop.client_user_us + hop.client_system_us <= hop.round_trip_us * 1.05
    assert ("same core" in hop.line()) == (client == server)
