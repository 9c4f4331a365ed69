"""Draw docs/quality_overlay.png: the same mask on a synthetic frame as a confident frame shows it
(solid green outline) and as a frame the quality signal flags low_confidence (dashed orange).

    python docs/quality_overlay.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from llm4seg.data.synthetic import synthetic_dataset
from llm4seg.runtime.core.segmenter import overlay


def main() -> None:
    """Write the picture beside this script."""
    images, masks, _ = synthetic_dataset(1, 192, seed=3)
    frame = cv2.GaussianBlur(cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR), (0, 0), 2)  # smooth: a small picture file
    mask = np.asarray(masks[0], np.uint8)
    panels = []
    for unsure, label in ((False, "confident"), (True, "low_confidence")):
        panel = overlay(frame, mask, unsure=unsure)
        cv2.putText(panel, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(panel)
    cv2.imwrite(str(Path(__file__).with_name("quality_overlay.png")), np.hstack(panels))


if __name__ == "__main__":
    main()
