"""Guest media: Windows facts, the config ISO layout, rendering and ISO building."""
