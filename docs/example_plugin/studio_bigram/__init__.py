"""studio-bigram: an example aigc-studio plugin (see the plugin guide, docs/plugins.md).

The studio imports this module through the ``studio.plugins`` entry point and calls its hook
implementations. Keep this module light: no model library at import time.
"""

from __future__ import annotations

from collections.abc import Callable

from studio import hookimpl
from studio_bigram.generator import BigramGenerator

__version__ = "0.1.0"


@hookimpl
def register_generators(register: Callable[[type], None]) -> None:
    """Contribute the bigram generator."""
    register(BigramGenerator)
