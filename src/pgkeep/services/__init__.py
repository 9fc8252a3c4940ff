"""Service functions: the one place each operation is implemented.

The CLI, the API and the scheduler call these; they never print.
"""
