"""pgkeep's benchmark: pgkeep side by side with pg_dump, pg_restore and the spec's pipeline.

Run from the repository root with the project's virtualenv::

    .venv/bin/python -m bench --scale 100 --realistic-mb 1000
    .venv/bin/python -m bench --tiny --out /tmp/bench   # seconds; what CI runs

See docs/benchmark.md for what is measured and the latest results.
"""
