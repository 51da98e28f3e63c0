"""One stream's life: relaying events, limits, the terminal frame; resumable streams."""
