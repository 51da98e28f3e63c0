"""process.py: descriptor limits, the descriptor table and the collector, in fresh processes."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Process


def fd_table_size(pid: int | str = "self") -> int:
    """The kernel's descriptor-table size for `pid` (FDSize in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("FDSize:"):
            return int(line.split()[1])
    raise AssertionError("no FDSize")


def soft_fd_limit(pid: int) -> tuple[int, int]:
    """(soft, hard) 'Max open files' from /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no Max open files")


def run_python(code: str, soft_limit: int | None = None) -> dict[str, Any]:
    """Run `code` in a fresh interpreter (optionally with a lower soft fd limit); its JSON."""
    def lower() -> None:
        if soft_limit is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_limit, hard))

    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, preexec_fn=lower, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
needs_headroom = pytest.mark.skipif(
    HARD == resource.RLIM_INFINITY or HARD < 4096,
    reason="the hard limit on open files is unlimited or below 4,096 here",
)


@needs_headroom
def test_reserving_grows_the_table_once_and_leaves_no_descriptor_open() -> None:
    result = run_python("""
        import json, os
        from promptcast.process import reserve_fd_table
        def size():
            for line in open("/proc/self/status"):
                if line.startswith("FDSize:"):
                    return int(line.split()[1])
        before, fds = size(), len(os.listdir("/proc/self/fd"))
        reserve_fd_table(4096)
        print(json.dumps({"before": before, "after": size(),
                          "fds": [fds, len(os.listdir("/proc/self/fd"))]}))
    """, soft_limit=4096)
    assert result["before"] < 4096
    assert result["after"] >= 4096
    assert result["fds"][0] == result["fds"][1]


def test_reserving_past_the_limit_leaves_the_table_alone() -> None:
    result = run_python("""
        import json, os
        from promptcast.process import reserve_fd_table
        fds = len(os.listdir("/proc/self/fd"))
        reserve_fd_table(1 << 30)
        print(json.dumps({"fds": [fds, len(os.listdir("/proc/self/fd"))]}))
    """)
    assert result["fds"][0] == result["fds"][1]


@needs_headroom
def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    result = run_python("""
        import json, resource
        from promptcast.process import raise_fd_limit
        before = resource.getrlimit(resource.RLIMIT_NOFILE)
        returned = raise_fd_limit()
        print(json.dumps({"before": before, "after": resource.getrlimit(resource.RLIMIT_NOFILE),
                          "returned": returned}))
    """, soft_limit=1024)
    assert result["before"][0] == 1024
    soft, hard = result["after"]
    assert soft == hard == result["returned"]
    assert hard == result["before"][1]


def test_start_up_objects_are_frozen_and_full_collections_are_rarer() -> None:
    result = run_python("""
        import gc, json
        from promptcast.process import FULL_COLLECTION_EVERY, tune_gc
        default = gc.get_threshold()
        tune_gc()
        print(json.dumps({"default": default, "tuned": gc.get_threshold(),
                          "frozen": gc.get_freeze_count(), "every": FULL_COLLECTION_EVERY}))
    """)
    assert result["tuned"] == [*result["default"][:2], result["every"]]
    assert result["every"] > result["default"][2]
    assert result["frozen"] > 1000  # the modules' objects, out of every collection


@needs_headroom
def test_serve_starts_with_the_table_grown_and_the_limit_raised(
    tmp_path: Path, processes: Callable[..., Process]
) -> None:
    # Started with a low soft limit, as many shells and service managers give.
    soft_before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, HARD))
    try:
        server = processes([], {"PROMPTCAST_LOG_LEVEL": "warning"}, tmp_path / "server.log")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft_before, HARD))
    soft, hard = soft_fd_limit(server.proc.pid)
    assert soft == hard == HARD
    assert fd_table_size(server.proc.pid) >= min(HARD, 65_536)
