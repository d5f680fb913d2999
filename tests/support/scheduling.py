"""How pytest-xdist hands test files to its workers: costliest first, a package together.

``--dist loadfile`` sends whole files, in the order of their test counts. That put the heavy
end-to-end files (few tests, minutes each) last, where one worker ran alone for minutes, and
split ``tests/ui`` between the workers and between other files, so its package-scoped server
was started up to five times. Here a unit is a file, or a whole folder of ``PACKAGE_UNITS``
(its package-scoped fixtures then start once), and a free worker takes the unit that cost most
in the last measured run (``tests/durations.json``; longest first keeps the tail short).

Refresh the costs after a full run: ``python -m tests.support.scheduling JUNIT_XML``
(``make durations`` writes the JUnit file and the costs).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadScopeScheduling

ROOT = Path(__file__).resolve().parents[2]
COSTS = ROOT / "tests" / "durations.json"
# Folders whose tests share package-scoped fixtures: one unit each, on one worker.
PACKAGE_UNITS = ("tests/ui",)
# A unit the last run did not see (a new file) costs this much per test.
UNKNOWN_SECONDS_PER_TEST = 2.0


def unit_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    for package in PACKAGE_UNITS:
        if path.startswith(package + "/"):
            return package
    return path


def load_costs(path: Path = COSTS) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()}


class CostliestFirstScheduling(LoadScopeScheduling):
    """``loadfile`` with the units above, handed out costliest first."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.costs = load_costs()

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _cost(self, unit: str) -> float:
        known = self.costs.get(unit)
        if known is not None:
            return known
        return UNKNOWN_SECONDS_PER_TEST * len(self.workqueue[unit])

    def _assign_work_unit(self, node: Any) -> None:
        costliest = max(self.workqueue, key=self._cost)
        self.workqueue.move_to_end(costliest, last=False)
        super()._assign_work_unit(node)


def costs_from_junit(xml_path: Path) -> dict[str, float]:
    """Seconds per unit (setup, call and teardown of its tests) from pytest's JUnit XML."""
    totals: Counter[str] = Counter()
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        while parts and not (ROOT / ("/".join(parts) + ".py")).is_file():
            parts.pop()  # a test class's name, not a module's
        if parts:
            totals[unit_of("/".join(parts) + ".py")] += float(case.get("time", 0))
    return {unit: round(seconds, 1) for unit, seconds in sorted(totals.items())}


if __name__ == "__main__":
    costs = costs_from_junit(Path(sys.argv[1]))
    COSTS.write_text(json.dumps(costs, indent=1, sort_keys=True) + "\n")
    print(f"{len(costs)} units, {sum(costs.values()):.0f} s in all, written to {COSTS}")
