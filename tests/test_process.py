"""process.py: descriptor limits, the descriptor table and the collector, in fresh processes."""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promptcast.ops import process
from promptcast.ops.process import Prepared, log_prepared

from .conftest import Process

HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
needs_headroom = pytest.mark.skipif(
    HARD == resource.RLIM_INFINITY or HARD < 4096,
    reason="the hard limit on open files is unlimited or below 4,096 here",
)

# Prepended to the child's code: its own soft limit, and the table size it reads.
_CHILD = """
import json, os, resource
def table_size():
    for line in open("/proc/self/status"):
        if line.startswith("FDSize:"):
            return int(line.split()[1])
def open_fds():
    return len(os.listdir("/proc/self/fd"))
soft_limit = {soft!r}
if soft_limit is not None:
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (soft_limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
"""


def run_python(code: str, soft_limit: int | None = None) -> dict[str, Any]:
    """Run `code` in a fresh interpreter, optionally with a lower soft fd limit; its JSON."""
    source = _CHILD.format(soft=soft_limit) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          timeout=60, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def fd_limits(pid: int) -> tuple[int, int]:
    """(soft, hard) 'Max open files' from /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no Max open files")


@needs_headroom
def test_reserving_grows_the_table_once_and_leaves_no_descriptor_open() -> None:
    result = run_python("""
        from promptcast.ops.process import reserve_fd_table
        before, fds = table_size(), open_fds()
        slots = reserve_fd_table(4096)
        print(json.dumps({"before": before, "after": table_size(), "slots": slots,
                          "fds": [fds, open_fds()]}))
    """, soft_limit=4096)
    assert result["before"] < 4096
    assert result["after"] >= 4096
    assert result["slots"] == 4096
    assert result["fds"][0] == result["fds"][1]


@needs_headroom
def test_reserving_never_replaces_a_descriptor_already_at_the_top() -> None:
    result = run_python("""
        from promptcast.ops.process import reserve_fd_table
        r, w = os.pipe()
        os.dup2(w, 4095)  # as if inherited at the top slot
        os.close(w)
        slots = reserve_fd_table(4096)
        os.write(4095, b"still open")
        print(json.dumps({"slots": slots, "read": os.read(r, 100).decode()}))
    """, soft_limit=4096)
    assert result == {"slots": 0, "read": "still open"}


def test_reserving_past_the_limit_leaves_the_table_and_descriptors_alone() -> None:
    result = run_python("""
        from promptcast.ops.process import reserve_fd_table
        before, fds = table_size(), open_fds()
        slots = reserve_fd_table(1 << 30)
        print(json.dumps({"sizes": [before, table_size()], "slots": slots,
                          "fds": [fds, open_fds()]}))
    """)
    assert result["slots"] == 0
    assert result["sizes"][0] == result["sizes"][1]
    assert result["fds"][0] == result["fds"][1]


@needs_headroom
def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    result = run_python("""
        from promptcast.ops.process import raise_fd_limit
        returned = raise_fd_limit()
        print(json.dumps({"returned": returned,
                          "now": resource.getrlimit(resource.RLIMIT_NOFILE)}))
    """, soft_limit=1024)
    assert result["returned"] == [1024, HARD, HARD]
    assert result["now"] == [HARD, HARD]


def test_a_refused_raise_keeps_the_soft_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(kind: int, limits: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(process.resource, "getrlimit", lambda kind: (1024, 8192))
    monkeypatch.setattr(process.resource, "setrlimit", refuse)
    assert process.raise_fd_limit() == (1024, 1024, 8192)


def test_an_unlimited_hard_limit_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(kind: int, limits: tuple[int, int]) -> None:
        raise AssertionError("setrlimit called")

    infinity = process.resource.RLIM_INFINITY
    monkeypatch.setattr(process.resource, "getrlimit", lambda kind: (1024, infinity))
    monkeypatch.setattr(process.resource, "setrlimit", forbidden)
    assert process.raise_fd_limit() == (1024, 1024, infinity)


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14's collector has no threshold2")
def test_start_up_objects_are_frozen_and_full_collections_are_rarer() -> None:
    result = run_python("""
        import gc
        from promptcast.ops.process import FULL_COLLECTION_EVERY, tune_gc
        default = gc.get_threshold()
        returned = tune_gc()
        print(json.dumps({"default": default, "tuned": gc.get_threshold(), "returned": returned,
                          "frozen": gc.get_freeze_count(), "every": FULL_COLLECTION_EVERY}))
    """)
    assert result["tuned"] == [*result["default"][:2], result["every"]]
    assert result["returned"] == result["every"] > result["default"][2]
    assert result["frozen"] > 1000  # the modules' objects, out of every collection


def test_start_up_says_what_changed_and_warns_when_few_streams_fit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="promptcast.process"):
        log_prepared(Prepared(soft_before=1024, soft=2048, hard=2048, table_slots=2048,
                              full_collection_every=100))
    info, warning = caplog.records
    assert info.getMessage() == (
        "open files: soft limit raised from 1,024 to 2,048 (hard 2,048); descriptor table "
        "reserved: 2,048 slots; full garbage collections: every 100 middle-generation "
        "collections")
    assert warning.levelno == logging.WARNING
    assert "about 1,024 streams can be open at once" in warning.getMessage()


@needs_headroom
def test_serve_starts_with_the_table_grown_and_the_limit_raised(
    tmp_path: Path, processes: Callable[..., Process]
) -> None:
    # Started with a low soft limit, as many shells and service managers give.
    # The server inherits it from this process, which gets its own back at once.
    soft_before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, HARD))
    try:
        server = processes([], {"PROMPTCAST_LOG_LEVEL": "info"}, tmp_path / "server.log")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft_before, HARD))
    assert fd_limits(server.proc.pid) == (HARD, HARD)
    assert proc_status(server.proc.pid, "FDSize") >= min(HARD, 65_536)
    assert (f"open files: soft limit raised from 1,024 to {HARD:,} (hard {HARD:,}); "
            f"descriptor table reserved: {min(HARD, 65_536):,} slots") in server.output()
