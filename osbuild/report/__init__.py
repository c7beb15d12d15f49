"""HTML pages for people: one build's report, and the fleet's status."""
