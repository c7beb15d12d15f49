"""osbuild: build Windows cloud images from vendor install media inside OpenStack."""

__version__ = "0.1.0"
