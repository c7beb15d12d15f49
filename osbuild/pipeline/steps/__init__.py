"""The build's steps, one module each, each owning the resources it creates."""
