"""pytest configuration shared by all tests; helpers live in tests/helpers.py."""
