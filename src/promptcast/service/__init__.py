"""The model service: request bodies, meta-prompts, model routing."""
