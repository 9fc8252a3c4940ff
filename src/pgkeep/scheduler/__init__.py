"""The scheduled jobs (the spec's backup worker): daily backup, cleanup, restore drill, and physical
backups when configured."""
