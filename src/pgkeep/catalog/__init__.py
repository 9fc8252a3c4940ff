"""The backup catalog: an index of backups in a SQL database (SQLite or PostgreSQL)."""
