"""Holoscan imported the one way: its per-run [info] lines quiet unless the user set a log level, and
its stack-size warning (meant for its CUDA operators) not shown. Holoscan is optional
(`pip install 'llm4seg[holoscan]'`)."""

from __future__ import annotations

import os
import warnings
from typing import Any


def holoscan_module() -> Any:
    """The holoscan package, imported as the module says (an error naming the extra when missing)."""
    from llm4seg._optional import require

    with warnings.catch_warnings():
        # "Current stack size (8.0 MB) is below the recommended minimum": for its CUDA operators.
        warnings.filterwarnings("ignore", message="Current stack size", category=RuntimeWarning)
        holoscan = require("holoscan", "Holoscan operators")
    if "HOLOSCAN_LOG_LEVEL" not in os.environ:  # its per-run [info] lines; the user's setting wins
        from holoscan.logger import LogLevel, set_log_level

        set_log_level(LogLevel.WARN)
    return holoscan


__all__ = ["holoscan_module"]
