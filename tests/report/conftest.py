"""The report tests drive real builds through the e2e tier's simulated-cloud fixture."""

from tests.e2e.conftest import cloud  # noqa: F401  (a fixture, used by name)
