"""The library behind one object: opened (and migrated) at start-up, closed at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from promptcast.storage import transfer
from promptcast.storage.database import Database
from promptcast.storage.prompts import Prompts
from promptcast.storage.recorder import Recorder
from promptcast.storage.runs import Runs
from promptcast.storage.templates import Templates
from promptcast.storage.testsets import Evaluations, TestSets

log = logging.getLogger("promptcast.library")

# At shutdown, queued run records get this long to reach the database.
FLUSH_SECONDS = 5.0


class Library:
    """Prompts, runs, templates, test sets and evaluations in one database."""

    def __init__(self, db: Database, *, record_runs: bool = True,
                 record_queue: int = 10_000) -> None:
        self.db = db
        self.prompts = Prompts(db)
        self.runs = Runs(db)
        self.templates = Templates(db)
        self.testsets = TestSets(db)
        self.evaluations = Evaluations(db)
        self.recorder = Recorder(self.runs, bound=record_queue) if record_runs else None

    async def export(self, owner: str, *, runs: bool = True) -> dict[str, Any]:
        """Everything `owner` has (transfer.py)."""
        return await transfer.export(self.db, owner, runs=runs)

    async def import_document(self, owner: str, doc: dict[str, Any],
                              check_template: Callable[[str, str, str], None] | None = None
                              ) -> transfer.Counts:
        """Write what `doc` has that `owner` has not, all or nothing (transfer.py)."""
        return await transfer.import_document(self.db, owner, doc, check_template)


@contextlib.asynccontextmanager
async def open_library(url: str, *, record_runs: bool = True,
                       record_queue: int = 10_000) -> AsyncIterator[Library]:
    """Migrate the database and start the run recorder; stop both at the end.

    Raises DatabaseUnavailable (with the database named, not its password) when
    the database cannot be reached or migrated.
    """
    db = Database(url)
    try:
        await db.upgrade()
        library = Library(db, record_runs=record_runs, record_queue=record_queue)
        log.info("library: %s", db.shown)
        writer = None
        if library.recorder is not None:
            writer = asyncio.get_running_loop().create_task(library.recorder.run(),
                                                            name="run-recorder")
        try:
            yield library
        finally:
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            if library.recorder is not None:
                await library.recorder.flush(FLUSH_SECONDS)
    finally:
        await db.aclose()
