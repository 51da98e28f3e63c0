"""Unguessable ids, cut from a buffer of OS randomness.

A stream id is the capability to read (resume) and cancel a stream, so it
must come from the OS's CSPRNG; a `getrandom` call per id costs a syscall
per request, so each thread reads 4 KiB at a time and cuts ids from it.
"""

from __future__ import annotations

import base64
import os
import threading

_POOL_BYTES = 4096


class _Pool(threading.local):
    buffer = b""
    offset = 0


_pool = _Pool()


def random_bytes(n: int) -> bytes:
    """`n` bytes from the OS's CSPRNG, never handed out twice."""
    pool = _pool
    start = pool.offset
    if start + n > len(pool.buffer):
        pool.buffer = os.urandom(max(_POOL_BYTES, n))
        start = 0
    pool.offset = start + n
    return pool.buffer[start:start + n]


def stream_id() -> str:
    """12 URL-safe characters (72 bits): free of `:` and of anything unsafe in Last-Event-ID."""
    return base64.urlsafe_b64encode(random_bytes(9)).decode()


def request_id() -> str:
    """16 hex characters."""
    return random_bytes(8).hex()
