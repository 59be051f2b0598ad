"""The request log: one verifiable record per inference request, in the same SQLite file."""
