"""Process-wide preparation for holding many streams: file descriptors and the garbage collector.

Each open stream holds two sockets and about a hundred objects the garbage
collector tracks. Left at their defaults, both showed up as pauses of the whole
event loop, every stream stalled at once (docs/benchmarks.md, "Stalls"):

- The kernel grows a process's file-descriptor table by doubling it, and in a
  process with threads (uvloop's resolver pool is one) each growth waits for
  an RCU grace period. The table is grown once, at start-up, instead.
- A full collection walks every tracked object, so it takes longer the more
  streams are open, and under many new streams a second Python runs one
  often. Start-up objects are frozen out of it, and it runs ten times less
  often. Streams leave almost no cyclic garbage, so what waits for it longer
  costs next to no memory.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import resource
import sys
from dataclasses import dataclass

log = logging.getLogger("promptcast.process")

# Below this many open files, say at start-up how few streams fit.
FEW_FILES = 4096
# Slots reserved up front: 65,536 cost the kernel about 0.5 MiB and cover
# 30,000 streams; a process past that grows the table as usual.
FD_TABLE_RESERVE = 65_536
# Middle-generation collections per full one (Python's default is 10).
FULL_COLLECTION_EVERY = 100
# Python 3.14's incremental collector ignores the third threshold.
_THRESHOLD2_HONOURED = sys.version_info < (3, 14)


@dataclass(frozen=True)
class Prepared:
    """What `prepare_for_streams` found and did, for the start-up log line."""

    soft_before: int
    soft: int
    hard: int
    table_slots: int
    full_collection_every: int | None


def raise_fd_limit() -> tuple[int, int, int]:
    """Raise the soft limit on open files to the hard one, as Go's runtime does.

    Returns (soft before, soft now, hard); either may be RLIM_INFINITY.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit is not a number to raise to (Linux caps it anyway).
    if soft == resource.RLIM_INFINITY or hard == resource.RLIM_INFINITY or soft >= hard:
        return soft, soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft, soft, hard
    return soft, hard, hard


def reserve_fd_table(slots: int) -> int:
    """Grow the kernel's descriptor table to at least `slots` entries now, not under load.

    Returns the slots reserved (0 if it could not).
    """
    if slots <= 3:
        return 0
    probe = os.open(os.devnull, os.O_RDONLY)
    try:
        # The lowest free descriptor at or above the top slot makes the kernel
        # size the table for it (and never replaces one already there); the
        # table keeps its size after the descriptor is closed.
        high = fcntl.fcntl(probe, fcntl.F_DUPFD, slots - 1)
    except OSError:
        return 0  # no free number up there under the limit: the table grows as it goes
    finally:
        os.close(probe)
    os.close(high)
    return slots


def tune_gc() -> int | None:
    """Freeze start-up objects out of collections and make full collections rarer.

    Returns the middle collections per full one now, or None where Python has
    no such threshold (3.14's incremental collector).
    """
    gc.collect()
    gc.freeze()
    if not _THRESHOLD2_HONOURED:
        return None
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    return FULL_COLLECTION_EVERY


def prepare_for_streams() -> Prepared:
    """All of the above, once, in `serve` before the server starts."""
    soft_before, soft, hard = raise_fd_limit()
    wanted = FD_TABLE_RESERVE if soft == resource.RLIM_INFINITY else min(soft, FD_TABLE_RESERVE)
    table = reserve_fd_table(wanted)
    return Prepared(soft_before, soft, hard, table, tune_gc())


def _count(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else f"{value:,}"


def log_prepared(prepared: Prepared) -> None:
    """One start-up line saying what was changed; a warning when few streams fit."""
    raised = (f"raised from {_count(prepared.soft_before)} to {_count(prepared.soft)}"
              if prepared.soft != prepared.soft_before else f"{_count(prepared.soft)}")
    full = (f"every {prepared.full_collection_every} middle-generation collections"
            if prepared.full_collection_every else "Python's default")
    log.info("open files: soft limit %s (hard %s); descriptor table reserved: %s slots; "
             "full garbage collections: %s", raised, _count(prepared.hard),
             f"{prepared.table_slots:,}", full)
    if prepared.soft != resource.RLIM_INFINITY and prepared.soft < FEW_FILES:
        log.warning("the limit on open files is %s: each stream holds two, so about %s "
                    "streams can be open at once; raise the hard limit (ulimit -Hn, "
                    "LimitNOFILE=, docker --ulimit nofile=) to hold more",
                    _count(prepared.soft), f"{prepared.soft // 2:,}")
