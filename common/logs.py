"""One-line, colour-free log records on stderr, each tagged with the process's role and name."""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "fedad"


def setup_logging(tag: str, level: int = logging.INFO) -> logging.Logger:
    """Configure the ``fedad`` logger: ``time LEVEL [tag] message`` on stderr, one line per event."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{tag}] %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    """The shared ``fedad`` logger."""
    return logging.getLogger(LOGGER_NAME)
