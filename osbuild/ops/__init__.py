"""Building blocks for unattended operation: state, locks, fingerprints, gc, metrics, notify."""
