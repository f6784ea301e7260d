"""conveyor: background jobs for Python."""
