"""Causal temporal smoothing of one stream's probability maps (a step of the mask stage).

- "ema": p_t' = alpha * p_t + (1 - alpha) * p_{t-1}'.
- "median": the median of the last `window` maps.

Both reset at a scene cut (the grey frame's 32x32 thumbnail changes by more than `cut_level`) or a
change of frame size, so a new scene never inherits the old mask. Both are causal: frame t's
output uses frames <= t only, so no frame is delayed; the cost is lag (an EMA's step response
reaches half its change after ln 2 / -ln(1 - alpha) frames), measured in benchmarks/temporal.py.
Torch-free (numpy + OpenCV).
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from llm4seg.errors import ConfigError

CUT_LEVEL = 40.0  # mean absolute change of a 32x32 grey thumbnail (0-255) that counts as a scene cut
MAX_WINDOW = 15  # the median holds this many maps at most (each a full frame of float32)
KINDS = ("ema", "median")


def thumbnail(grey: np.ndarray) -> np.ndarray:
    """uint8 (H, W) grey frame -> float32 (32, 32) by area averaging (what cut detection compares)."""
    return cv2.resize(grey.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)


class Smoother:
    """Causal filtering of one stream's probability maps (not thread-safe: one per stream).

    Args:
        kind: "ema" or "median".
        alpha: the EMA's weight of the newest frame, in (0, 1].
        window: the median's frame count, odd, from 3 to MAX_WINDOW.
        cut_level: thumbnail change (mean |difference|, 0-255) that resets the filter.
    """

    def __init__(self, kind: str = "ema", alpha: float = 0.3, window: int = 3, cut_level: float = CUT_LEVEL) -> None:
        if kind not in KINDS:
            raise ConfigError(f"smoothing {kind!r} is not known", hint=f"use {' or '.join(KINDS)} (or no smoothing)")
        if not 0 < alpha <= 1:
            raise ConfigError(f"smoothing alpha {alpha} is not in (0, 1]", hint="e.g. 0.5 (1 = no smoothing)")
        if not (isinstance(window, int) and 3 <= window <= MAX_WINDOW and window % 2 == 1):
            raise ConfigError(f"median window {window!r} must be odd, from 3 to {MAX_WINDOW} frames",
                              hint="e.g. median:3 (each frame held costs a full-size probability map)")
        self.kind, self.alpha, self.window, self.cut_level = kind, float(alpha), int(window), float(cut_level)
        self.delay_frames = 0  # causal: frame t's output uses frames <= t
        self.resets = 0
        self._state: np.ndarray | None = None
        self._history: deque[np.ndarray] = deque(maxlen=self.window)
        self._thumb: np.ndarray | None = None

    def describe(self) -> str:
        """The filter in words, for reports."""
        form = f"EMA alpha {self.alpha:g}" if self.kind == "ema" else f"causal median of {self.window} frames"
        return f"{form}, reset at scene cuts (thumbnail change > {self.cut_level:g}/255) and size changes; delay 0 frames"

    def reset(self) -> None:
        """Forget the past (a new scene or stream)."""
        self._state, self._thumb = None, None
        self._history.clear()

    def _is_cut(self, thumb: np.ndarray | None, prob: np.ndarray) -> bool:
        last = self._state if self._state is not None else (self._history[-1] if self._history else None)
        if last is None:
            return False
        if last.shape != prob.shape:
            return True
        if thumb is None or self._thumb is None:
            return False
        return float(np.abs(thumb - self._thumb).mean()) > self.cut_level

    def update(self, prob: np.ndarray, grey: np.ndarray | None = None) -> np.ndarray:
        """The smoothed probability map of this frame (float32, its size).

        Args:
            prob: this frame's probabilities (H, W).
            grey: this frame as uint8 grey (H, W), for cut detection (None: cuts are not detected).
        """
        prob = np.asarray(prob, np.float32)
        thumb = None if grey is None else thumbnail(grey)
        if self._is_cut(thumb, prob):
            self.reset()
            self.resets += 1
        self._thumb = thumb
        if self.kind == "ema":
            self._state = prob.copy() if self._state is None else self.alpha * prob + (1 - self.alpha) * self._state
            return self._state
        self._history.append(prob)
        return np.median(np.stack(self._history), axis=0).astype(np.float32)


def smoother_from_text(text: str | None) -> Smoother | None:
    """A Smoother from the CLI's `--smooth` value: none, ema, ema:ALPHA, median or median:WINDOW."""
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None
    kind, _, value = text.strip().lower().partition(":")
    try:
        if kind == "ema":
            return Smoother("ema", alpha=float(value)) if value else Smoother("ema")
        if kind == "median":
            return Smoother("median", window=int(value)) if value else Smoother("median")
    except ValueError:
        pass
    raise ConfigError(f"--smooth {text!r} is not a smoothing", hint="use none, ema (alpha 0.3), ema:0.5, median or median:3")


__all__ = ["CUT_LEVEL", "KINDS", "MAX_WINDOW", "Smoother", "smoother_from_text", "thumbnail"]
