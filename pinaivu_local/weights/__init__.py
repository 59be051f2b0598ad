"""Model weights on disk: where they come from, fetching them, and what a GGUF file holds."""
