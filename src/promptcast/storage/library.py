"""The library behind one object: opened (and migrated) at start-up, closed at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from promptcast.errors import DatabaseUnavailable
from promptcast.storage import transfer
from promptcast.storage.database import Database
from promptcast.storage.prompts import Prompts
from promptcast.storage.recorder import Recorder
from promptcast.storage.runs import Runs
from promptcast.storage.templates import Templates
from promptcast.storage.testsets import EvaluationFields, Evaluations, TestSets

log = logging.getLogger("promptcast.library")

# At shutdown, queued run records get this long to reach the database.
FLUSH_SECONDS = 5.0
# An evaluation kept off its run's path waits this long in all for a database that is
# down; and at most this many wait at once (beyond, they are dropped with a warning).
KEEP_PATIENCE = 300.0
MAX_KEEPING = 100
_RETRY_MAX = 5.0


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
        self._keeping: set[asyncio.Task[None]] = set()

    def keep_evaluation(self, owner: str, new: EvaluationFields, evaluation_id: str) -> bool:
        """Store a finished run's evaluation from a task of its own: never awaited by the run.

        While the database is down it is retried (for KEEP_PATIENCE s); False when it was
        dropped at once because too many are waiting already.
        """
        if len(self._keeping) >= MAX_KEEPING:
            log.warning("dropped evaluation %s: %d are waiting for the database",
                        evaluation_id, len(self._keeping))
            return False
        task = asyncio.get_running_loop().create_task(
            self._keep(owner, new, evaluation_id), name=f"keep-evaluation-{evaluation_id}")
        self._keeping.add(task)
        task.add_done_callback(self._keeping.discard)
        return True

    async def _keep(self, owner: str, new: EvaluationFields, evaluation_id: str) -> None:
        delay = 0.1
        try:
            async with asyncio.timeout(KEEP_PATIENCE):
                while True:
                    try:
                        await self.evaluations.create(owner, new, evaluation_id)
                        return
                    except DatabaseUnavailable:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, _RETRY_MAX)
        except TimeoutError:
            log.warning("dropped evaluation %s: the database did not take it within %g s",
                        evaluation_id, KEEP_PATIENCE)
        except Exception:
            # Refused whatever we do (a duplicate id, say): lose this one, not the server.
            log.exception("dropped evaluation %s: the database refused it", evaluation_id)

    async def settle(self, seconds: float) -> None:
        """Let the evaluations being kept finish, for at most `seconds`; cancel the rest."""
        pending = set(self._keeping)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=seconds)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d evaluation(s) not written at shutdown: the database did not take "
                        "them in time", len(late))
            await asyncio.gather(*late, return_exceptions=True)

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
            await library.settle(FLUSH_SECONDS)
    finally:
        await db.aclose()
