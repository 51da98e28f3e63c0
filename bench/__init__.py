"""Benchmarks for promptcast's relay: `python -m bench.run` (see docs/benchmarks.md).

- `bench.upstream`: an OpenAI-compatible upstream test double (raw asyncio, uvloop).
- `bench.loadgen`: a load generator that opens many SSE streams and checks each one.
- `bench.run`: starts every target the same way, runs the scenarios, writes the results.
"""
