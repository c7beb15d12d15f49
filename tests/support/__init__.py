"""Test helpers, outside the wheel: real OpenStack services for the functional tier."""
