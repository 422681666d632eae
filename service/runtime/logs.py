"""Log format and levels of every twinbase process."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # migration chatter at every start says nothing an operator needs
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
