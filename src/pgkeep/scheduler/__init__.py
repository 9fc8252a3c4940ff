"""The scheduled jobs (the spec's backup worker): daily backup, daily cleanup."""
