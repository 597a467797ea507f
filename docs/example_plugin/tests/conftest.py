"""Lets ``pytest tests`` run in a source checkout before the plugin is installed.

An installed copy (``pip install .``, or the wheel aigc-studio's ``make test`` installs) is used
whenever there is one; only without it is the package found next to this folder.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("studio_patterns") is None:
    sys.path.append(str(Path(__file__).resolve().parent.parent))
