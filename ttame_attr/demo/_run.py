"""The end-to-end demo: classifier, T-TAME, Grad-CAM, metrics, report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["DemoConfig", "DemoResult", "run_demo"]

logger = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Sizes of the demo run. :meth:`full` is the default, :meth:`quick` a shorter run.

    Attributes:
        image_size: side of the synthetic images.
        train_images: images the classifier and the T-TAME head are trained on.
        val_images: held-out images for the accuracy and T-TAME validation curves.
        eval_images: held-out test images the metrics are computed on.
        show_images: test images drawn in the report.
        train_classifier: train the classifier here instead of loading the shipped one.
        classifier_epochs: epochs of the classifier when it is trained here.
        ttame_epochs: epochs of the T-TAME head (8 in the paper).
        batch_size: T-TAME batch size (32 in the paper).
        seed: seeds data, weights and training.
        threads: torch CPU threads (``None``: leave torch's default).
    """

    image_size: int = 64
    train_images: int = 4096
    val_images: int = 512
    eval_images: int = 128
    show_images: int = 8
    train_classifier: bool = False
    classifier_epochs: int = 6
    ttame_epochs: int = 8
    batch_size: int = 32
    seed: int = 0
    threads: int | None = None

    @classmethod
    def full(cls, seed: int = 0) -> DemoConfig:
        """The default demo (a few minutes on 2 CPU cores)."""
        return cls(seed=seed)

    @classmethod
    def quick(cls, seed: int = 0) -> DemoConfig:
        """A shorter run with fewer images and epochs (rougher maps)."""
        return cls(train_images=2048, val_images=256, eval_images=64, show_images=6,
                   classifier_epochs=4, ttame_epochs=4, seed=seed)


@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    report: Path
    json_path: Path
    pngs: list[Path]
    metrics: dict[str, dict[str, float]]
    classifier_accuracy: float
    seconds: dict[str, float] = field(default_factory=dict)


def _bar_factory(progress: bool) -> Callable[..., Any] | None:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm


def _method_metrics(
    model: torch.nn.Module, x: Tensor, maps: Tensor, masks: Tensor, seed: int
) -> dict[str, float]:
    from ttame_attr.metrics import average_drop_increase, pointing_game, road

    adic = average_drop_increase(model, x, maps, fractions=(1.0, 0.5, 0.15))
    roads = road(model, x, maps, generator=torch.Generator().manual_seed(seed))
    pg = pointing_game(maps, masks)
    return {
        "ad_100": adic.average_drop[1.0],
        "ad_50": adic.average_drop[0.5],
        "ad_15": adic.average_drop[0.15],
        "ic_100": adic.increase_in_confidence[1.0],
        "ic_50": adic.increase_in_confidence[0.5],
        "ic_15": adic.increase_in_confidence[0.15],
        "road_morf": 100.0 * roads.morf_average,
        "road_lerf": 100.0 * roads.lerf_average,
        "pointing_game": 100.0 * pg.accuracy,
    }


def _curves_figure(clf_history: dict[str, list[float]], ttame_history: Any) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    epochs = range(1, len(clf_history["train_loss"]) + 1)
    ax1.plot(epochs, clf_history["train_loss"], "o-", label="train loss")
    ax1b = ax1.twinx()
    ax1b.plot(epochs, clf_history["train_accuracy"], "s--", color="tab:green", label="train acc.")
    ax1b.plot(epochs, clf_history["val_accuracy"], "^-", color="tab:red", label="held-out acc.")
    ax1b.set_ylim(0, 1.02)
    ax1.set_title("classifier")
    ax1.set_xlabel("epoch")
    lines = ax1.get_lines() + ax1b.get_lines()
    ax1.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="center right")
    t_epochs = range(1, len(ttame_history) + 1)
    for key, style in (("loss", "o-"), ("ce", "s-"), ("area", "^-"), ("variation", "v-")):
        ax2.plot(t_epochs, ttame_history.column(key), style, label=key)
    val = ttame_history.column("val_loss")
    if all(v is not None for v in val):
        ax2.plot(t_epochs, val, "o--", label="val loss")
    ax2.set_yscale("log")
    ax2.set_title("T-TAME loss and its terms")
    ax2.set_xlabel("epoch")
    ax2.legend(fontsize=7)
    ax3.plot(t_epochs, ttame_history.column("fidelity"), "o-", label="train")
    val_f = ttame_history.column("val_fidelity")
    if all(v is not None for v in val_f):
        ax3.plot(t_epochs, val_f, "s--", label="held-out")
    ax3.set_ylim(0, 1.02)
    ax3.set_title("T-TAME fidelity")
    ax3.set_xlabel("epoch")
    ax3.legend(fontsize=7)
    return fig


def _class_maps_figure(image: Tensor, maps: Tensor, class_names: tuple[str, ...],
                       truth: int, pred: int) -> Any:
    from matplotlib.figure import Figure

    from ttame_attr.viz import to_numpy_image

    k = maps.shape[0]
    fig = Figure(figsize=(1.6 * (k + 1), 2.0), layout="constrained")
    axes = fig.subplots(1, k + 1)
    axes[0].imshow(to_numpy_image(image)[0])
    axes[0].set_title(f"true {class_names[truth]}\npred. {class_names[pred]}", fontsize=8)
    for c in range(k):
        axes[c + 1].imshow(maps[c].numpy(), cmap="jet", vmin=0.0, vmax=1.0)
        axes[c + 1].set_title(class_names[c], fontsize=8, fontweight="bold" if c == pred else None)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def run_demo(
    out_dir: str | Path = "ttame_demo_output",
    config: DemoConfig | None = None,
    *,
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
) -> DemoResult:
    """Run the whole demo and write ``report.html``, the PNGs and ``results.json`` to ``out_dir``.

    Steps: render the synthetic shapes data; train a small CNN on it; fit T-TAME's head on the
    training images (no labels); explain held-out images with T-TAME and Grad-CAM; score both
    with AD/IC (100/50/15%), ROAD and the pointing game; draw and write the report.

    Args:
        out_dir: output folder (created).
        config: sizes; :meth:`DemoConfig.full` by default.
        progress: show progress bars.
        echo: where status lines go (``print`` by default, ``None`` for silence).

    Returns:
        A :class:`DemoResult` with the paths and the numbers.
    """
    from ttame_attr import TTAME
    from ttame_attr.data import CLASS_NAMES, MEAN, STD, SyntheticShapes
    from ttame_attr.demo._classifier import (
        WEIGHTS_PATH,
        Normalized,
        load_reference_classifier,
        train_classifier_here,
    )
    from ttame_attr.demo._gradcam import gradcam_backend, gradcam_maps
    from ttame_attr.demo._report import metrics_table_rows, write_report
    from ttame_attr.viz import figure_to_png, plot_grid

    cfg = config or DemoConfig.full()
    say = echo or (lambda _s: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    bar = _bar_factory(progress)
    seconds: dict[str, float] = {}
    start = tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        seconds[name] = round(now - tick, 2)
        tick = now

    torch.manual_seed(cfg.seed)
    size = cfg.image_size
    say(f"[1/5] rendering {cfg.train_images} training and {cfg.val_images + cfg.eval_images} "
        f"held-out synthetic images ({size}x{size})")
    x_train, y_train, _ = SyntheticShapes(cfg.train_images, size, cfg.seed, "train").generate(
        range(cfg.train_images))
    x_val, y_val, _ = SyntheticShapes(cfg.val_images, size, cfg.seed, "val").generate(
        range(cfg.val_images))
    x_test, y_test, m_test = SyntheticShapes(cfg.eval_images, size, cfg.seed, "test").generate(
        range(cfg.eval_images))
    lap("data")

    if not cfg.train_classifier and WEIGHTS_PATH.is_file() and size == 64:
        say(f"[2/5] loading the shipped classifier ({WEIGHTS_PATH.name}; "
            "--train-classifier trains one here instead)")
        net, clf_info = load_reference_classifier()
        clf_source = (f"shipped weights, trained on {clf_info['recipe']['num_train']} images x "
                      f"{clf_info['recipe']['epochs']} epochs with ttame_attr.data.load_or_train")
    else:
        if not cfg.train_classifier:
            logger.warning("demo: no shipped classifier for this set-up; training one here")
        say(f"[2/5] training the classifier here ({cfg.classifier_epochs} epochs on "
            f"{cfg.train_images} images)")
        net, clf_info = train_classifier_here(
            (x_train, y_train), (x_val, y_val), epochs=cfg.classifier_epochs, image_size=size,
            seed=cfg.seed, bar=bar,
        )
        clf_source = (f"trained here on {cfg.train_images} images x {cfg.classifier_epochs} "
                      "epochs")
    clf_history = clf_info["history"]
    model = Normalized(net, MEAN, STD)
    model.eval()
    with torch.no_grad():
        test_pred = torch.cat([model(b).argmax(1) for b in x_test.split(256)])
    accuracy = float((test_pred == y_test).float().mean())
    say(f"      held-out accuracy {accuracy:.3f}")
    lap("classifier")

    say(f"[3/5] fitting T-TAME ({cfg.ttame_epochs} epochs, batch {cfg.batch_size}, "
        "the paper's recipe)")
    explainer = TTAME(model, input_size=(3, size, size))
    g = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(x_train, batch_size=cfg.batch_size, shuffle=True,
                                         generator=g, drop_last=True)
    val_loader = torch.utils.data.DataLoader(x_val, batch_size=128)
    ttame_history = explainer.fit(loader, epochs=cfg.ttame_epochs, val_loader=val_loader,
                                  progress=progress)
    explainer.save(out / "ttame_head.pt")
    lap("ttame_fit")

    say(f"[4/5] explaining {cfg.eval_images} held-out images with T-TAME and Grad-CAM, scoring")
    backend = gradcam_backend()
    layer = net.layer4
    t0 = time.perf_counter()
    ttame_maps = torch.cat([explainer.attribute(b, target=t) for b, t in
                            zip(x_test.split(128), test_pred.split(128))])
    seconds["ttame_explain"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    cam_maps = torch.cat([gradcam_maps(model, layer, b, t, backend) for b, t in
                          zip(x_test.split(128), test_pred.split(128))])
    seconds["gradcam_explain"] = round(time.perf_counter() - t0, 3)
    gradcam_name = f"Grad-CAM ({backend})"
    metrics = {
        "T-TAME": _method_metrics(model, x_test, ttame_maps, m_test, cfg.seed),
        gradcam_name: _method_metrics(model, x_test, cam_maps, m_test, cfg.seed),
    }
    lap("explain_and_metrics")

    say("[5/5] drawing the report")
    n = min(cfg.show_images, cfg.eval_images)
    titles = [f"{CLASS_NAMES[int(t)]} (pred. {CLASS_NAMES[int(p)]})"
              for t, p in zip(y_test[:n], test_pred[:n])]
    grid = plot_grid(x_test[:n], {"T-TAME": ttame_maps[:n], gradcam_name: cam_maps[:n]},
                     titles=titles, contours=m_test[:n], cell_size=2.0)
    with torch.no_grad():
        all_maps = torch.sigmoid(explainer.class_maps(x_test[:1]))[0]
        all_maps = torch.nn.functional.interpolate(all_maps[None], size=(size, size),
                                                   mode="bilinear", align_corners=False)[0]
    class_fig = _class_maps_figure(x_test[0], all_maps, CLASS_NAMES, int(y_test[0]),
                                   int(test_pred[0]))
    curves = _curves_figure(clf_history, ttame_history)
    figures = {
        "Explanations of held-out images": (
            figure_to_png(grid, dpi=90),
            "Each row: a held-out test image (true class, predicted class), then T-TAME's map "
            "and Grad-CAM's map of the predicted class. The white outline is the ground-truth "
            "class-defining shape; the other shapes are distractors that never define a class.",
        ),
        "T-TAME maps of every class for one image": (
            figure_to_png(class_fig, dpi=90),
            "The head's mask (sigmoid, common scale 0-1) for each of the 8 classes, all from one "
            "forward pass. Only the predicted class (bold) should light up the object.",
        ),
        "Training curves": (
            figure_to_png(curves, dpi=90),
            "Left: the classifier (its own training run). Middle: T-TAME's loss and its terms per epoch (the "
            "cross-entropy of the masked image, the area term and the smoothness term). Right: the "
            "share of masked images that keep the clean image's class (fidelity).",
        ),
    }
    pngs = []
    for (_title, (png, _)), name in zip(figures.items(),
                                       ("explanations.png", "class_maps.png",
                                        "training_curves.png")):
        path = out / name
        path.write_bytes(png)
        pngs.append(path)
    seconds["total"] = round(time.perf_counter() - start, 2)

    summary = [
        ("data", f"SyntheticShapes {size}x{size}: {cfg.train_images} training, "
                 f"{cfg.val_images} validation, {cfg.eval_images} test images (seed {cfg.seed})"),
        ("classes", ", ".join(CLASS_NAMES)),
        ("classifier", f"{type(net).__name__}, {sum(p.numel() for p in net.parameters()):,} "
                       f"parameters, {clf_source}"),
        ("held-out accuracy", f"{accuracy:.3f}"),
        ("T-TAME", f"layers {explainer.layers}, maps {explainer.map_size}, "
                   f"{sum(p.numel() for p in explainer.head.parameters()):,} parameters, "
                   f"{cfg.ttame_epochs} epochs, batch {cfg.batch_size}"),
        ("Grad-CAM", f"{backend}, layer net.layer4"),
        ("explanation time",
         f"T-TAME {seconds['ttame_explain']:.2f} s, Grad-CAM {seconds['gradcam_explain']:.2f} s "
         f"for {cfg.eval_images} images"),
        ("run time", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()
                               if k not in ("ttame_explain", "gradcam_explain"))),
        ("torch threads", str(torch.get_num_threads())),
    ]
    note = (
        f"On the {cfg.eval_images} test images, for the predicted class. AD (average drop, %) "
        "and IC (increase in confidence, %) keep the top 100/50/15% pixels of the min-max "
        "normalised map (the paper's protocol). ROAD: accuracy (%) after removing 10-90% of the "
        "pixels, most relevant first (MoRF) or least relevant first (LeRF), imputed with the "
        "noisy linear imputer, averaged over the fractions. Pointing game: % of images whose "
        "map maximum lies on the class-defining shape. Best value per column in bold."
    )
    report = write_report(out / "report.html", summary=summary, metrics=metrics,
                          metrics_note=note, figures=figures)
    json_path = out / "results.json"
    json_path.write_text(json.dumps({
        "config": asdict(cfg),
        "classifier": {"test_accuracy": accuracy, "source": clf_source, "history": clf_history},
        "ttame": {"layers": explainer.layers, "history": ttame_history.as_dicts()},
        "gradcam_backend": backend,
        "metrics": metrics,
        "seconds": seconds,
    }, indent=2), encoding="utf-8")

    rows = metrics_table_rows(metrics)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    say("")
    for row in rows:
        say("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))))
    say("")
    say(f"Report: {report.resolve()}")
    say(f"(also {json_path.name} and the PNGs in {out.resolve()}; total {seconds['total']:.0f} s)")
    return DemoResult(report=report, json_path=json_path, pngs=pngs, metrics=metrics,
                      classifier_accuracy=accuracy, seconds=seconds)
