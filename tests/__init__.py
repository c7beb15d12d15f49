"""The test suite: an import root for `tests.support` (the real-services helpers)."""
