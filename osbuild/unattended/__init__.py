"""Unattended operation: many builds at once (jobs), state, locks, fingerprints, gc, metrics."""
