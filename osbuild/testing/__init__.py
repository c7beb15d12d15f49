"""Test helpers that ship with osbuild: real OpenStack services for the functional tier."""
