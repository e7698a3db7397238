"""`gitserve sites`: run the sites supervisor in the foreground (SPEC §7.1).

`gitserve serve` starts it by itself when a site exists and none runs; run it yourself (or
as the gitserve-sites systemd unit) to keep it independent of serve. Logs go to
HOME/logs/sites.log.
"""

from __future__ import annotations

import logging

import typer

from .common import HomeOption, load_settings
from .serve import LogFormatOption, LogLevelOption, setup_logging


def sites(
    home: HomeOption = None,
    log_level: LogLevelOption = "INFO",
    log_format: LogFormatOption = "text",
) -> None:
    """Supervise the embedded nginx and every site's processes (outlives `gitserve serve`)."""
    from deploy import supervisor

    settings = load_settings(home)
    setup_logging(settings.home, "sites.log", log_level, log_format, console=False)
    logging.getLogger("gitserve.sites").debug("starting")
    supervisor.main(settings)  # SupervisorError (already running): one line, exit 1


def add_commands(app: typer.Typer) -> None:
    app.command("sites")(sites)
