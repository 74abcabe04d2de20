"""rnnlab's built-in plugins. They register through entry points (see pyproject.toml), exactly
as a third-party package would, so the built-ins exercise the public plugin API."""
