"""The library's storage: prompts, versions, runs, templates, test sets, in SQLite or PostgreSQL.

    database.py   the engine, transactions, readiness (DatabaseUnavailable when down)
    migrate.py    Alembic, with the migrations shipped in migrations/
    tables.py     the tables
    prompts.py    prompts and versions; runs.py, templates.py, testsets.py the others
    transfer.py   export and import
    recorder.py   run records, batched off the streams' path
    library.py    all of it behind one object, opened at start-up

It sits beside the streams store, below the service: the service reads
templates from it, the routes read and write everything through it.
"""
