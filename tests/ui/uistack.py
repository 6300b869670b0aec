"""Names shared by the dashboard tests and their fixtures (``conftest`` is not importable by name
when several test folders run together: each has its own)."""

ASSET = "cartpole-0"
MODEL = "persistence-test:1"
