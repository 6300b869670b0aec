"""The dashboard process stays light: nothing it imports pulls in the world model's or the
simulator's heavy libraries (torch, pybullet), which would cost seconds and hundreds of MB."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "pybullet", "sim", "twin.model")
PAGES = ("fleet", "asset", "history", "events", "models", "whatif")


def test_the_pages_and_what_they_import_lazily_leave_torch_and_pybullet_out() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import ui.views.{page}\n" for page in PAGES)
        + "import ui.cli, ui.live, ui.queries\n"
        + "from twin.worker.memory import search  # the asset and events pages, on demand\n"
        + f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY[:3]!r}"
        + f" or m.startswith({HEAVY[3]!r}))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"the dashboard imports {loaded}"
