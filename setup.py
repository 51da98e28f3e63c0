"""The one thing pyproject.toml cannot say yet without an experimental table: the C module.

`promptcast.wire._scan` holds the relay's full-speed byte scans (src/promptcast/wire/_scan.c).
It is optional: where it does not build, `promptcast.wire.scan` runs the same in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("promptcast.wire._scan", sources=["src/promptcast/wire/_scan.c"], optional=True),
])
