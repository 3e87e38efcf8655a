"""The ``npo`` command: argument parsing and rendering only. Each sub-command gets its
components from ``bot.wiring`` and calls the service, a job or an evaluation; it may import
any ``bot`` package but builds no concrete adapter itself."""

from bot.cli.commands import main

__all__ = ["main"]
