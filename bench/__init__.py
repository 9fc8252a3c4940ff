"""pgkeep's benchmark: pgkeep side by side with pg_dump, pg_restore, the spec's pipeline and pgBackRest.

Run from the repository root with the project's virtualenv::

    .venv/bin/python -m bench --scale 100 --realistic-mb 1000
    .venv/bin/python -m bench --tiny --out /tmp/bench   # a minute or two; what CI runs

See docs/benchmark.md for what is measured and the latest results.
"""
