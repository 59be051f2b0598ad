"""Tiny generated models: GGUFs of the Llama 3.2 architecture with random weights, for `--test-models`,
the tests and the bench. Their text is meaningless by design; the whole API around them is real."""
