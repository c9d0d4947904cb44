"""A run on disk: its directory and name, checkpoints, worklog, provenance record, teachers."""
