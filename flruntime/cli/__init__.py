"""The ``flruntime`` command line: one module per verb group."""
