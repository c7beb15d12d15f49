"""The simulated-cloud fixture for the CLI tests that need a cloud."""

from tests.e2e.conftest import cloud  # noqa: F401  (a fixture, used by name)
