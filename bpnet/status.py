"""``status.json`` as TAO writes it: one JSON object per line, appended as a task progresses."""

import datetime
import json
import os
from typing import Any, Dict, Optional


class StatusLogger:
    """Appends TAO-style status lines (``date``, ``time``, ``status``, ``verbosity``, ``message``, ``kpi``)."""

    def __init__(self, path: str):
        self.path = path

    def write(self, status: str, message: str, kpi: Optional[Dict[str, Any]] = None,
              verbosity: str = "INFO") -> None:
        """Append one line; ``status`` is STARTED, RUNNING, SUCCESS or FAILURE."""
        now = datetime.datetime.now()
        line: Dict[str, Any] = {
            "date": f"{now.month}/{now.day}/{now.year}",
            "time": f"{now.hour}:{now.minute}:{now.second}",
            "status": status,
            "verbosity": verbosity,
            "message": message,
        }
        if kpi is not None:
            line["kpi"] = kpi
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
