"""The worker's logger. A library does not configure logging: without a handler of the
application's, records go nowhere (``worker run`` in a terminal adds a handler of its own).

Imported only by code that logs, so that ``import queuectl`` does not load ``logging``.
"""

from __future__ import annotations

import logging

from queuectl.text import printable

_package = logging.getLogger("queuectl")
if not any(isinstance(h, logging.NullHandler) for h in _package.handlers):  # once, even on reload
    _package.addHandler(logging.NullHandler())

#: pools, their threads and the stores' background watchers log here
worker_log = logging.getLogger("queuectl.worker")


class PrintableFormatter(logging.Formatter):
    """Log lines with control characters shown escaped: a pool in a terminal logs job ids,
    host names and errors, which must not act on that terminal (see ``text.printable``)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))
