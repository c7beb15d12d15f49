"""Talking to OpenStack: connecting, retrying safely, waiting with deadlines."""
