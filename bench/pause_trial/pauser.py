"""SIGSTOP / SIGCONT of whole process groups (members and load clients each run in a session
of their own), with a record of what is stopped so that everything is continued again: by
:meth:`Pauser.resume_all` (the trial calls it in ``finally`` and its signal handlers raise
into that ``finally``) and, as a last resort, at interpreter exit."""
from __future__ import annotations

import atexit
import os
import signal
from typing import Dict


class Pauser:
    def __init__(self) -> None:
        self.stopped: Dict[int, str] = {}      # process group id -> what it is
        atexit.register(self.resume_all)

    def pause(self, pgid: int, what: str) -> None:
        self.stopped[pgid] = what              # recorded first: a signal in between still continues it
        os.killpg(pgid, signal.SIGSTOP)

    def resume(self, pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self.stopped.pop(pgid, None)

    def resume_all(self) -> None:
        for pgid in list(self.stopped):
            self.resume(pgid)
