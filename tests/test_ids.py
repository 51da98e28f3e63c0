"""Ids cut from a pool of OS randomness: well-formed, and never handed out twice."""

from __future__ import annotations

import re
import threading

from promptcast import ids


def test_formats() -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]{12}", ids.stream_id())
    assert re.fullmatch(r"[0-9a-f]{16}", ids.request_id())


def test_no_id_twice_across_pool_refills_and_threads() -> None:
    seen: list[list[str]] = []

    def draw() -> None:
        # 2,000 ids of 9 bytes: four refills of the 4 KiB pool per thread.
        seen.append([ids.stream_id() for _ in range(2000)])

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for batch in seen for i in batch]
    assert len(everything) == 8000 == len(set(everything))


def test_large_requests_are_served_whole() -> None:
    assert len(ids.random_bytes(10_000)) == 10_000
    assert ids.random_bytes(16) != ids.random_bytes(16)
