"""The package version, in a module of its own so that low layers can name it without importing `imgclass`."""

__version__ = "0.2.0.dev0"
