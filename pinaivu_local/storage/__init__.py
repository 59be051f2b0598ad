"""The SQLite database (keys, request log): opening, pragmas, migrations."""
