"""Process-wide preparation for holding many streams: file descriptors and the garbage collector.

Each open stream holds two sockets and about a hundred objects the garbage
collector tracks. Left at their defaults, both showed up as pauses of the whole
event loop, every stream stalled at once (docs/benchmarks.md, "Stalls"):

- The kernel grows a process's file-descriptor table by doubling it, and in a
  process with threads (uvloop's resolver pool is one) each growth waits for
  an RCU grace period: 7-18 ms at 256, 512, 1,024 ... open descriptors. The
  table is grown once, at start-up, instead.
- A full collection walks every tracked object, so it takes longer the more
  streams are open (20-40 ms at 800), and by default one runs after every
  ten young-generation collections: every 0.35 s under a load of 2,000 new
  streams a second. Start-up objects are frozen out of it, and it runs ten
  times less often. Streams leave almost no cyclic garbage (about 0.1 objects
  each), so what waits for it longer costs next to no memory.
"""

from __future__ import annotations

import gc
import os
import resource

# Slots reserved up front: 65,536 cost the kernel about 0.5 MiB and cover
# 30,000 streams; a process past that grows the table as usual.
FD_TABLE_RESERVE = 65_536
# Young collections per full one (Python's default is 10).
FULL_COLLECTION_EVERY = 100


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one, as Go's runtime does; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def reserve_fd_table(slots: int) -> None:
    """Grow the kernel's descriptor table to at least `slots` entries now, not under load."""
    if slots <= 3:
        return
    probe = os.open(os.devnull, os.O_RDONLY)
    try:
        # A descriptor at the top makes the kernel size the table for it; the
        # table keeps its size after the descriptor is closed.
        os.close(os.dup2(probe, slots - 1))
    except OSError:
        pass  # no room at that number (a lower limit): the table grows as it goes
    finally:
        os.close(probe)


def tune_gc() -> None:
    """Freeze start-up objects out of collections and make full collections rarer."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def prepare_for_streams() -> None:
    """All of the above, once, in `serve` before the server starts."""
    reserve_fd_table(min(raise_fd_limit(), FD_TABLE_RESERVE))
    tune_gc()
