"""The one boundary for PostgreSQL client binaries and connections."""
