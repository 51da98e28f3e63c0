"""Running it: API keys, rate limits, metrics, logs, process set-up."""
