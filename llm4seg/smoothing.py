"""Causal temporal smoothing of one stream's probability maps (a step of the mask stage).

- "ema": p_t' = alpha * p_t + (1 - alpha) * p_{t-1}'.
- "median": the median of the last `window` maps.
- "flow": the EMA with the previous smoothed map first warped onto the current frame by dense
  optical flow (llm4seg/motion.py), and blended in only where the warp is reliable:
  p_t' = (1 - w) * p_t + w * warp(p_{t-1}'), w = (1 - alpha) * reliability. A plain EMA averages
  maps whose objects have moved (it lags, and costs Dice on real endoscopy); this one follows them.

All reset at a scene cut (the grey frame's 32x32 thumbnail changes by more than `cut_level`) or a
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
from llm4seg.motion import MotionEstimator, reduced

CUT_LEVEL = 40.0  # mean absolute change of a 32x32 grey thumbnail (0-255) that counts as a scene cut
FLOW_ALPHA = 0.5  # "flow" without a value: benchmarks/temporal.py
MAX_WINDOW = 15  # the median holds this many maps at most (each a full frame of float32)
KINDS = ("ema", "median", "flow")
CUT_RELIABLE = 0.2  # "flow": less than this share of the frame with trusted motion is a cut


def thumbnail(grey: np.ndarray) -> np.ndarray:
    """uint8 (H, W) grey frame -> float32 (32, 32) by area averaging (what cut detection compares)."""
    return cv2.resize(grey.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)


class Smoother:
    """Causal filtering of one stream's probability maps (not thread-safe: one per stream).

    Args:
        kind: "ema", "median" or "flow".
        alpha: the EMA's (and the flow filter's) weight of the newest frame, in (0, 1].
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
        self._grey: np.ndarray | None = None  # "flow": the previous frame, reduced
        self._motion = MotionEstimator() if kind == "flow" else None
        self.disagreement: float | None = None  # "flow": mean |p_t - warped p_{t-1}'| where the warp is trusted

    def describe(self) -> str:
        """The filter in words, for reports."""
        form = {"ema": f"EMA alpha {self.alpha:g}", "median": f"causal median of {self.window} frames",
                "flow": f"motion-compensated EMA alpha {self.alpha:g} (optical flow, blended where reliable)"}[self.kind]
        return f"{form}, reset at scene cuts (thumbnail change > {self.cut_level:g}/255) and size changes; delay 0 frames"

    def reset(self) -> None:
        """Forget the past (a new scene or stream)."""
        self._state, self._thumb, self._grey, self.disagreement = None, None, None, None
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
        if self.kind == "flow":
            if grey is None:
                raise ConfigError("flow smoothing needs the frames (their motion), not only the probabilities",
                                  hint="feed the mask stage each frame (it does for every door), or use ema")
            return _flow_step(self, prob, grey)
        if self.kind == "ema":
            self._state = prob.copy() if self._state is None else self.alpha * prob + (1 - self.alpha) * self._state
            return self._state
        self._history.append(prob)
        return np.median(np.stack(self._history), axis=0).astype(np.float32)


def _flow_step(smoother: Smoother, prob: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """One motion-compensated EMA step (see the module)."""
    small = reduced(grey)
    previous, smoother._grey = smoother._grey, small
    if smoother._state is None or previous is None or previous.shape != small.shape:
        smoother._state = prob.copy()
        return smoother._state
    motion = smoother._motion.between(previous, small, prob.shape)
    if motion.reliable_fraction() < CUT_RELIABLE:  # nothing of the last frame is seen here: a cut
        smoother.resets += 1
        smoother._state, smoother.disagreement = prob.copy(), None
        return smoother._state
    warped, reliability = motion.warp(smoother._state)
    trusted = reliability > 0.5
    smoother.disagreement = float(np.abs(prob - warped)[trusted].mean()) if trusted.any() else None
    weight = (1.0 - smoother.alpha) * reliability
    smoother._state = ((1.0 - weight) * prob + weight * warped).astype(np.float32)
    return smoother._state


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
        if kind == "flow":
            return Smoother("flow", alpha=float(value)) if value else Smoother("flow", alpha=FLOW_ALPHA)
    except ValueError:
        pass
    raise ConfigError(f"--smooth {text!r} is not a smoothing",
                      hint="use none, ema (alpha 0.3), ema:0.5, median, median:3, flow or flow:0.5")


__all__ = ["CUT_LEVEL", "KINDS", "MAX_WINDOW", "Smoother", "smoother_from_text", "thumbnail"]
