"""The ``pgkeep`` command line: parse input, call one service function, map the result."""
