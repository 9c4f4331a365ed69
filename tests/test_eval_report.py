"""Eval overlays are drawn at each image's own size, with a legend and the per-image Dice (issue 13, item 10)."""

from __future__ import annotations

import cv2
import numpy as np

import llm4seg
from llm4seg.data.datasets import load_dataset
from llm4seg.evaluate import evaluate_model, write_report


def test_overlays_at_native_size_with_legend(trained_checkpoint, tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(root / "images" / f"c{i}.png"), rng.integers(0, 255, (280, 300, 3), dtype=np.uint8))
        mask = np.zeros((280, 300), np.uint8)
        mask[60:200, 80:220] = 1
        cv2.imwrite(str(root / "masks" / f"c{i}.png"), mask)
    model = llm4seg.load_checkpoint(trained_checkpoint)
    data = load_dataset(str(root), None, model.config.image_size)
    rows, probs = evaluate_model(model, data, __import__("torch").device("cpu"))
    write_report(tmp_path / "report", rows, probs, data, 0.5, n_examples=1)
    written = sorted((tmp_path / "report" / "overlays").iterdir())
    assert written
    for path in written:
        image = cv2.imread(str(path))
        assert image.shape[1] == 300 and image.shape[0] > 280  # the image's own size (not 64x64), a legend strip below
        green = (image[:, :, 1] > 150) & (image[:, :, 0] < 60) & (image[:, :, 2] < 60)
        assert green.sum() > 100  # the truth outline (and the legend's text)


def test_one_epoch_curves_show_the_point_on_a_whole_epoch_axis():
    """Issue 19, item 11: after one epoch the loss panel was empty and the x ticks ran 0.945-1.050."""
    import matplotlib.pyplot as plt

    from llm4seg.training.curves import curves_figure

    fig = curves_figure([{"epoch": 1, "train_loss": 1.2, "val_dice": 0.4, "val_iou": 0.3}])
    ax_loss, ax_val = fig.axes
    assert ax_loss.lines[0].get_marker() not in (None, "None", "") and list(ax_loss.lines[0].get_xdata()) == [1]
    for ax in (ax_loss, ax_val):
        assert ax.get_xlim() == (0.5, 1.5)
        ticks = [t for t in ax.get_xticks() if 0.5 <= t <= 1.5]
        assert ticks == [1.0], ticks
    plt.close(fig)


def test_overlay_prediction_stays_visible_on_red_tissue_and_the_legend_has_a_background():
    """Issue 19, item 11: red contours vanished on red endoscopy tissue; the legend had no background."""
    import numpy as np

    from llm4seg.evaluate import PREDICTION_BGR, overlay

    red = np.zeros((256, 256, 3), np.uint8)
    red[..., 0] = 200  # RGB red tissue
    pred = np.zeros((256, 256), bool)
    pred[100:200, 100:200] = True
    canvas = overlay(red, pred, np.zeros_like(pred), caption="Dice 0.5")
    drawn = canvas[100, 150]  # the prediction's top edge, in BGR
    assert tuple(int(v) for v in drawn) == PREDICTION_BGR and PREDICTION_BGR != (0, 0, 255)
    assert (canvas[256:, :, :] <= 40).mean() > 0.8  # the legend on a dark strip of its own, below the image


def test_the_legend_covers_no_pixel_of_the_image():
    """Issues 34 and 45 (item 6): the legend box covered part of a small truth lesion on a worst-case
    image; now it sits in a strip below the image: every image pixel is as drawn without it."""
    import numpy as np

    from llm4seg.evaluate import overlay

    image = np.full((200, 300, 3), 120, np.uint8)
    for box in ((5, 80, 5, 120), (150, 195, 250, 295)):  # lesions in two corners, one small
        truth = np.zeros((200, 300), bool)
        truth[box[0]:box[1], box[2]:box[3]] = True
        with_caption = overlay(image, truth, truth, caption="Dice 1.000 on a long stem name of a BUSI image")
        bare = overlay(image, truth, truth)
        assert with_caption.shape[0] > 200 and (with_caption[:200, :300] == bare[:200, :300]).all()
        assert (with_caption[:200, :300][~truth] == 120).mean() > 0.9  # only the contours drew on the image


def test_the_curves_legend_hides_no_point():
    """Issue 45, item 6: curves.png's legend (inside, lower right) hid the last point."""
    import matplotlib.pyplot as plt

    from llm4seg.training.curves import curves_figure

    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_dice": 0.9, "val_iou": 0.8} for e in range(1, 6)]
    fig = curves_figure(rows)
    fig.canvas.draw()
    ax = fig.axes[1]
    legend = ax.get_legend().get_window_extent()
    axes_box = ax.get_window_extent()
    assert legend.x0 >= axes_box.x1  # wholly outside the plotting area
    plt.close(fig)
