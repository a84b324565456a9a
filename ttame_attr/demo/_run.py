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
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ttame_attr._core.ttame import TTAME
from ttame_attr.classifiers import (
    REFERENCE_WEIGHTS,
    Normalized,
    build_classifier,
    load_reference_classifier,
    train_classifier,
)
from ttame_attr.data import CLASS_NAMES, MEAN, STD, SyntheticShapes
from ttame_attr.demo._figures import class_maps_figure, curves_figure, explanations_figure
from ttame_attr.demo._gradcam import gradcam_backend, gradcam_maps
from ttame_attr.demo._notes import captured_warnings, convergence_row
from ttame_attr.demo._report import metrics_table_rows, write_report
from ttame_attr.metrics import average_drop_increase, pointing_game, road

__all__ = ["DemoConfig", "DemoResult", "run_demo"]

logger = logging.getLogger(__name__)

Say = Callable[[str], None]
Data = dict[str, tuple[Tensor, ...]]


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
        head_init: how the T-TAME head's fusion starts (:class:`~ttame_attr.TTAME`'s ``head_init``).
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
    head_init: str = "zeros"
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


def _classifier(cfg: DemoConfig, data: Data, progress: bool,
                say: Say) -> tuple[nn.Module, dict[str, Any], str]:
    """The shipped classifier, or one trained here: ``(net, info, where it comes from)``."""
    if not cfg.train_classifier and REFERENCE_WEIGHTS.is_file() and cfg.image_size == 64:
        say(f"[2/5] loading the shipped classifier ({REFERENCE_WEIGHTS.name}; "
            "--train-classifier trains one here instead)")
        net, info = load_reference_classifier()
        return net, info, (f"shipped weights, trained on {info['recipe']['num_train']} images x "
                           f"{info['recipe']['epochs']} epochs with ttame_attr.classifiers.load_or_train")
    if not cfg.train_classifier:
        logger.warning("demo: no shipped classifier for this set-up; training one here")
    say(f"[2/5] training the classifier here ({cfg.classifier_epochs} epochs on {cfg.train_images} images)")
    torch.manual_seed(cfg.seed)
    net = build_classifier("cnn", num_classes=len(CLASS_NAMES), image_size=cfg.image_size)
    train, val = (DataLoader(TensorDataset(*data[split][:2]), batch_size=size, shuffle=split == "train",
                             generator=torch.Generator().manual_seed(cfg.seed))
                  for split, size in (("train", 128), ("val", 256)))
    history = train_classifier(net, train, val, cfg.classifier_epochs, lr=3e-3, seed=cfg.seed,
                               progress=progress)
    info = {"history": history.to_dict(), "val_accuracy": history.val_accuracy[-1]}
    return net.eval(), info, f"trained here on {cfg.train_images} images x {cfg.classifier_epochs} epochs"


def _method_metrics(model: nn.Module, x: Tensor, maps: Tensor, masks: Tensor, seed: int,
                    adic_source: Any = None) -> dict[str, float]:
    """AD/IC (100/50/15%), ROAD and the pointing game of one method's maps, in %. AD/IC read
    ``adic_source`` when given (a TTAME explainer: the paper's pre-sigmoid maps at map size)."""
    adic = average_drop_increase(model, x, maps if adic_source is None else adic_source,
                                 fractions=(1.0, 0.5, 0.15))
    roads = road(model, x, maps, generator=torch.Generator().manual_seed(seed))
    values = {f"ad_{round(f * 100)}": adic.average_drop[f] for f in adic.fractions}
    values.update({f"ic_{round(f * 100)}": adic.increase_in_confidence[f] for f in adic.fractions})
    values.update(road_morf=100.0 * roads.morf_average, road_lerf=100.0 * roads.lerf_average,
                  pointing_game=100.0 * pointing_game(maps, masks).accuracy)
    return values


_NOTE = (
    "On the {n} test images, for the predicted class. AD (average drop, %) and IC (increase in "
    "confidence, %) keep the pixels at or above the 0/50/85% quantiles of the min-max normalised "
    "map (the paper's protocol; T-TAME's pre-sigmoid map at its own size, as the authors "
    "evaluate it). ROAD: accuracy (%) after removing 10-90% of the pixels, most relevant first "
    "(MoRF) or least relevant first (LeRF), imputed with the noisy linear imputer, averaged over "
    "the fractions. Pointing game: % of images whose map maximum lies on the class-defining "
    "shape. Best value per column in bold."
)


class _Clock:
    """Seconds per stage of the run, rounded."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.start = self.tick = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self.tick = round(now - self.tick, 2), now

    def timed(self, name: str, fn: Callable[[], Tensor]) -> Tensor:
        t0 = time.perf_counter()
        result = fn()
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        return result


def _explain(explainer: TTAME, model: nn.Module, net: nn.Module, x: Tensor, classes: Tensor, backend: str,
             clock: _Clock) -> dict[str, Tensor]:
    """T-TAME's and Grad-CAM's maps of ``classes``, timed."""
    batches = list(zip(x.split(128), classes.split(128)))
    return {
        "T-TAME": clock.timed("ttame_explain", lambda: torch.cat(
            [explainer.attribute(b, target=t) for b, t in batches])),
        f"Grad-CAM ({backend})": clock.timed("gradcam_explain", lambda: torch.cat(
            [gradcam_maps(model, net.layer4, b, t, backend) for b, t in batches])),
    }


def _summary(cfg: DemoConfig, net: nn.Module, clf_source: str, accuracy: float, explainer: TTAME,
             backend: str, seconds: dict[str, float]) -> list[tuple[str, str]]:
    """The report's set-up table."""
    return [
        ("data", f"SyntheticShapes {cfg.image_size}x{cfg.image_size}: {cfg.train_images} training, "
                 f"{cfg.val_images} validation, {cfg.eval_images} test images (seed {cfg.seed})"),
        ("classes", ", ".join(CLASS_NAMES)),
        ("classifier", f"{type(net).__name__}, {sum(p.numel() for p in net.parameters()):,} "
                       f"parameters, {clf_source}"),
        ("held-out accuracy", f"{accuracy:.3f}"),
        ("T-TAME", f"layers {explainer.layers}, maps {explainer.map_size}, "
                   f"{sum(p.numel() for p in explainer.head.parameters()):,} parameters, "
                   f"{cfg.ttame_epochs} epochs, batch {cfg.batch_size}"),
        ("Grad-CAM", f"{backend}, layer net.layer4"),
        ("explanation time", f"T-TAME {seconds['ttame_explain']:.2f} s, Grad-CAM "
                             f"{seconds['gradcam_explain']:.2f} s for {cfg.eval_images} images"),
        ("run time", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()
                               if k not in ("ttame_explain", "gradcam_explain"))),
        ("torch threads", str(torch.get_num_threads())),
    ]


def _say_notes(notes: list[str], say: Say) -> None:
    """The library's warnings of a stage, each once."""
    for note in notes:
        say(f"      note: {note}")


def _say_table(metrics: dict[str, dict[str, float]], say: Say) -> None:
    """The metrics table, in aligned columns between blank lines."""
    rows = metrics_table_rows(metrics)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    say("")
    for row in rows:
        say("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    say("")


def _fit_ttame(cfg: DemoConfig, model: nn.Module, data: Data, progress: bool,
               say: Say) -> tuple[TTAME, Any, list[str]]:
    """Fit the head on the training images: ``(explainer, history, the library's warnings)``."""
    say(f"[3/5] fitting T-TAME ({cfg.ttame_epochs} epochs, batch {cfg.batch_size}; the paper's optimiser and "
        "schedule, its learning rate scaled to this short run)")
    explainer = TTAME(model, input_size=(3, cfg.image_size, cfg.image_size), head_init=cfg.head_init)
    loader = DataLoader(data["train"][0], batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    with captured_warnings() as captured:  # shown once below and in the report, not also logged
        ttame_history = explainer.fit(loader, epochs=cfg.ttame_epochs, progress=progress,
                                      val_loader=DataLoader(data["val"][0], batch_size=128))
    # fit's schedule line (a warning when the recipe chose the lr) is said by the demo's own line
    notes = [n for n in captured if not n.startswith("T-TAME training:")]
    sched = ttame_history.schedule or {}
    if sched:
        say(f"      {sched['total_steps']} steps at a maximum learning rate of {sched['lr']:.3g} "
            f"(learning rate {sched['source']['lr']}; the paper's is 1e-3 for 320,000 steps)")
    say(f"      {convergence_row(ttame_history)}")
    _say_notes(notes, say)
    return explainer, ttame_history, notes


def run_demo(
    out_dir: str | Path = "ttame_demo_output",
    config: DemoConfig | None = None,
    *,
    progress: bool = True,
    echo: Say | None = None,
) -> DemoResult:
    """Run the whole demo and write ``report.html``, the PNGs and ``results.json`` to ``out_dir``.

    Steps: render the synthetic shapes data; load the shipped classifier (or train one); fit
    T-TAME's head on the training images (no labels); explain held-out images with T-TAME and
    Grad-CAM; score both with AD/IC (100/50/15%), ROAD and the pointing game; draw and write
    the report.

    Args:
        out_dir: output folder (created).
        config: sizes; :meth:`DemoConfig.full` by default.
        progress: show progress bars.
        echo: where status lines go (``None``: nowhere; the command line passes ``print``).

    Returns:
        A :class:`DemoResult` with the paths and the numbers.
    """
    cfg = config or DemoConfig.full()
    say = echo or (lambda _line: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    clock = _Clock()
    torch.manual_seed(cfg.seed)
    say(f"[1/5] rendering {cfg.train_images} training and {cfg.val_images + cfg.eval_images} "
        f"held-out synthetic images ({cfg.image_size}x{cfg.image_size})")
    sizes = {"train": cfg.train_images, "val": cfg.val_images, "test": cfg.eval_images}
    data = {split: SyntheticShapes(n, cfg.image_size, cfg.seed, split).generate(range(n))
            for split, n in sizes.items()}
    clock.lap("data")
    net, clf_info, clf_source = _classifier(cfg, data, progress, say)
    model = Normalized(net, MEAN, STD).eval()
    x_test, y_test, m_test = data["test"]
    with torch.no_grad():
        test_pred = torch.cat([model(b).argmax(1) for b in x_test.split(256)])
    accuracy = float((test_pred == y_test).float().mean())
    say(f"      held-out accuracy {accuracy:.3f}")
    clock.lap("classifier")
    explainer, ttame_history, notes = _fit_ttame(cfg, model, data, progress, say)
    explainer.save(out / "ttame_head.pt")
    clock.lap("ttame_fit")
    say(f"[4/5] explaining {cfg.eval_images} held-out images with T-TAME and Grad-CAM, scoring")
    backend = gradcam_backend()
    with captured_warnings() as later:
        maps = _explain(explainer, model, net, x_test, test_pred, backend, clock)
        metrics = {name: _method_metrics(model, x_test, m, m_test, cfg.seed, explainer if name == "T-TAME"
                                         else None) for name, m in maps.items()}
    _say_notes(later, say)
    notes += [n for n in later if n not in notes]
    clock.lap("explain_and_metrics")
    say("[5/5] drawing the report")
    n = min(cfg.show_images, cfg.eval_images)
    figures = {
        "Explanations of held-out images": explanations_figure(
            x_test[:n], y_test[:n], test_pred[:n], m_test[:n], {k: v[:n] for k, v in maps.items()}),
        "T-TAME maps of every class for one image": class_maps_figure(
            explainer, x_test[0], int(y_test[0]), int(test_pred[0])),
        "Training curves": curves_figure(clf_info["history"], ttame_history),
    }
    pngs = [out / name for name in ("explanations.png", "class_maps.png", "training_curves.png")]
    for path, (png, _) in zip(pngs, figures.values()):
        path.write_bytes(png)
    seconds = clock.seconds
    seconds["total"] = round(time.perf_counter() - clock.start, 2)
    report = write_report(out / "report.html", metrics=metrics, figures=figures,
                          summary=_summary(cfg, net, clf_source, accuracy, explainer, backend, seconds)
                          + [("T-TAME training check", convergence_row(ttame_history))],
                          metrics_note=_NOTE.format(n=cfg.eval_images), notes=notes)
    json_path = out / "results.json"
    json_path.write_text(json.dumps({
        "config": asdict(cfg),
        "classifier": {"test_accuracy": accuracy, "source": clf_source, "history": clf_info["history"]},
        "ttame": {"layers": explainer.layers, "history": ttame_history.as_dicts()},
        "gradcam_backend": backend, "metrics": metrics, "seconds": seconds, "notes": notes,
    }, indent=2), encoding="utf-8")
    _say_table(metrics, say)
    say(f"Report: {report.resolve()}")
    say(f"(also {json_path.name} and the PNGs in {out.resolve()}; total {seconds['total']:.0f} s)")
    return DemoResult(report=report, json_path=json_path, pngs=pngs, metrics=metrics,
                      classifier_accuracy=accuracy, seconds=seconds)
