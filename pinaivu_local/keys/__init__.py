"""API keys: generation, hashing, the SQLite store."""
