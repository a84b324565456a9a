"""The demo shows each of the library's warnings once, in its output and in the report, and the
report says whether the head settled; the overlay figure spans the page with a colour scale."""

from __future__ import annotations

import io
import json
import logging

import torch
from PIL import Image

from ttame_attr.demo import DemoConfig, run_demo
from ttame_attr.demo._figures import explanations_figure
from ttame_attr.demo._notes import captured_warnings, convergence_row
from ttame_attr.demo._report import write_report
from ttame_attr.training import EpochStats, TrainingHistory

TRAINING = "ttame_attr.training._fit"


def test_captured_warnings_collect_each_once_and_keep_them_off_the_root_logger(caplog) -> None:
    logger = logging.getLogger(TRAINING)
    with caplog.at_level(logging.INFO), captured_warnings() as notes:
        logger.warning("advice %d", 1)
        logger.warning("advice %d", 1)
        logger.warning("other")
        logger.info("progress")
    assert notes == ["advice 1", "other"]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, "progress")]
    assert logging.getLogger("ttame_attr").propagate
    logger.warning("after")
    assert caplog.records[-1].getMessage() == "after"  # restored: warnings reach the root again


def _history(*val_losses: float) -> TrainingHistory:
    return TrainingHistory([EpochStats(epoch=i + 1, loss=v, ce=v, area=0.1, variation=0.1, fidelity=0.9,
                                       lr=0.01, steps=10, val_loss=v, val_fidelity=0.9)
                            for i, v in enumerate(val_losses)])


def test_convergence_row_says_whether_the_head_settled() -> None:
    assert convergence_row(_history(1.0)).startswith("one epoch")
    settled = convergence_row(_history(1.0, 0.99))
    assert settled.startswith("settled: over the last epoch the validation loss changed -1.0%")
    assert convergence_row(_history(1.0, 0.9)).startswith("still improving: over the last epoch the "
                                                           "validation loss changed -10.0%")


def test_report_lists_the_notes_or_says_there_were_none(tmp_path) -> None:
    kwargs = {"summary": [("data", "x")], "metrics": {"m": {k: 1.0 for k in (
        "ad_100", "ad_50", "ad_15", "ic_100", "ic_50", "ic_15", "road_morf", "road_lerf", "pointing_game")}},
        "metrics_note": "", "figures": {}}
    with_notes = write_report(tmp_path / "a.html", notes=["head <under-trained>"], **kwargs).read_text()
    assert "<h2>Notes</h2>" in with_notes and "<li>head &lt;under-trained&gt;</li>" in with_notes
    assert "no warning" in write_report(tmp_path / "b.html", **kwargs).read_text()


def test_demo_shows_a_training_warning_once_and_in_the_report(tmp_path, monkeypatch, caplog) -> None:
    from ttame_attr.demo import _run

    real_fit = _run.TTAME.fit

    def fit_that_warns(self, *args, **kwargs):
        history = real_fit(self, *args, **kwargs)
        logging.getLogger(TRAINING).warning("the T-TAME head is probably under-trained (test)")
        return history

    monkeypatch.setattr(_run.TTAME, "fit", fit_that_warns)
    cfg = DemoConfig(image_size=32, train_images=32, val_images=16, eval_images=2, show_images=2,
                     train_classifier=True, classifier_epochs=1, ttame_epochs=1, batch_size=16, seed=1)
    lines: list[str] = []
    with caplog.at_level(logging.WARNING):
        result = run_demo(tmp_path / "out", cfg, progress=False, echo=lines.append)
    advice = "the T-TAME head is probably under-trained (test)"
    assert [line for line in lines if advice in line] == [f"      note: {advice}"]
    assert not [r for r in caplog.records if r.name.startswith("ttame_attr.training")]
    html = result.report.read_text(encoding="utf-8")
    assert f"<li>{advice}</li>" in html and "T-TAME training check" in html
    assert json.loads(result.json_path.read_text())["notes"] == [advice]


def test_explanations_figure_spans_the_page_with_a_colour_scale() -> None:
    n = 6
    images, masks = torch.rand(n, 3, 16, 16), torch.zeros(n, 1, 16, 16)
    masks[:, :, 4:9, 4:9] = 1
    labels = torch.arange(n)
    maps = {"T-TAME": torch.rand(n, 1, 16, 16), "Grad-CAM": torch.rand(n, 1, 16, 16)}
    png, caption = explanations_figure(images, labels, labels, masks, maps)
    width, height = Image.open(io.BytesIO(png)).size
    assert 1000 <= width <= 1100 and width > 2 * height  # images across the page, rows per method
    assert "colour scale" in caption
