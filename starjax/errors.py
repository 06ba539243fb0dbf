"""The one error type every layer raises for input a person must fix (the CLI prints it in one line, exit 2)."""


class ConfigError(ValueError):
    """A config problem, described in one line that names the key and the fix."""
