"""The test suite's root: makes ``tests/`` importable, so every test module, whatever its
folder, reaches the shared helpers as ``support.<module>`` (``tests/support``)."""
