"""The command-line tools: each module is one tool's ``main`` (``tools/*.py`` and ``python -m`` call them)."""
