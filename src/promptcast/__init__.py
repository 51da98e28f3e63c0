"""promptcast: stream an LLM's rewrite of a prompt to the browser."""

__version__ = "0.1.0"
