"""WAL archiving: ``wal-push`` (archive_command), ``wal-fetch`` (restore_command), archive status.

An inner layer: it imports storage, pipeline and config, never services or the edges.
"""
