"""Step kinds beyond Python tasks: HTTP requests."""
