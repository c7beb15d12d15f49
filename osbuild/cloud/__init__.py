"""Talking to OpenStack: one typed module per service, the console reader, retries, clock.

The only package that imports openstacksdk (an import-linter contract in pyproject.toml).
"""
