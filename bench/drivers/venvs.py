"""Virtual environments of their own for baselines whose pins clash with PyFlink's (Ray
needs a newer pyarrow, River numpy 2): made next to the repository on first use, from the
package registries, and reused while they import what they must."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


def own_python(name: str, packages: Sequence[str], imports: str) -> Path:
    """The interpreter of ``ROOT/<name>``, made and filled with ``packages`` unless it
    already runs ``import <imports>``."""
    venv = ROOT / name
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import {imports}"]
    if python.exists() and subprocess.run(check, capture_output=True,
                                          timeout=300).returncode == 0:
        return python
    log.info("making the environment %s (once, about a minute): %s", venv, " ".join(packages))
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True,
                   timeout=1200)
    subprocess.run(check, check=True, capture_output=True, timeout=300)
    return python
