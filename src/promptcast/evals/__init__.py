"""Evaluation: test sets, rule checks, a judge, pairwise verdicts, statistics, a streamed run.

Layered between the relay and the server: a run asks the model service for
one stream per cell (prompt x case) and is itself an event source the relay
streams to the client (`runner.EvalRun`). docs/eval.md describes the formats.
"""
