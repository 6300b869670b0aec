"""Jumeau's twin: the world model, the worker that runs it live, its store and the CLI."""

__version__ = "0.1.0"
