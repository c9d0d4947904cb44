"""User-facing errors: one line saying what was wrong and what to do; tools print them without a traceback."""


class UserError(Exception):
    """A problem with the user's config, paths or files (not a bug in this project)."""
