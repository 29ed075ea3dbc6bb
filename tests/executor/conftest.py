"""Fixtures of the executor tests live in tests/conftest.py (``isolated``: a database of their own)."""
