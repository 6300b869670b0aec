"""Logging set-up for command-line entry points (library code only calls ``getLogger``)."""

from __future__ import annotations

import logging
import os


def setup_logging(verbose: bool = False) -> None:
    """One readable line per record on stderr; ``JUMEAU_LOG=DEBUG`` or ``verbose`` for more."""
    level = logging.DEBUG if verbose else os.environ.get("JUMEAU_LOG", "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
