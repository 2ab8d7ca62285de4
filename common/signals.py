"""SIGTERM (``docker stop``, ``kill``, a supervisor) unwinds a command like Ctrl-C, so its cleanup runs.

Python's default for SIGTERM ends the process on the spot: no ``finally`` block runs, so a node's health file
stayed behind and ``fedad demo`` left its server and clients running.
``stop_on_sigterm`` raises ``Terminated`` (a ``KeyboardInterrupt``, so every Ctrl-C path applies) in the main
thread instead; a second SIGTERM during that cleanup ends the process as before. Code that installs its own
handler later (Flower's server, the key holder, ``fedad emit``) replaces this one.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM (see the module docstring)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process during the cleanup
    raise Terminated()


def stop_on_sigterm() -> bool:
    """Make SIGTERM raise ``Terminated``, where nobody else handles it; whether it was installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _raise_terminated)
    return True
