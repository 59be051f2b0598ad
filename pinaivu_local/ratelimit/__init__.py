"""Per-key rate limits: what they are (limits.py), kept in this process (window.py) or in Redis (redis_window.py)."""
