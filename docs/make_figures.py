"""Draw the documentation's figures with matplotlib.

- ``_static/ttame_diagram.png``: the "how T-TAME works" diagram. ``conf.py`` draws it at build
  time when the PNG is missing.
- ``_static/example_explanations.png``: real outputs for the README, the index and the
  quickstart: the demo's classifier (shipped with the package), a T-TAME head fitted here as the
  quick demo fits it (2,048 unlabelled synthetic images, 4 epochs, about a minute on a CPU), and
  T-TAME's maps beside Grad-CAM's on held-out test images. It is committed, not drawn by the
  build (it trains a head).

- ``_static/audit_report.png``: the top of an ``audit.html`` (the planted-shortcut CNN of
  ``benchmarks/audit.py``, its ``--reports`` folder), screenshotted in headless Chromium:
  ``python docs/make_figures.py audit REPORTS/cnn_planted/ttame/audit.html``.

``python docs/make_figures.py`` redraws the first two; ``python docs/make_figures.py diagram`` or
``examples`` one of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "_static" / "ttame_diagram.png"
EXAMPLES_OUT = OUT.parent / "example_explanations.png"
AUDIT_OUT = OUT.parent / "audit_report.png"


def draw(path: Path = OUT) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = Figure(figsize=(10, 4.2))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 42)
    ax.axis("off")

    def box(x, y, w, h, text, color, size=8.5):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.4", fc=color, ec="#333",
                                    lw=0.8))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(x0, y0, x1, y1, color="#333", style="-|>"):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle=style, mutation_scale=10,
                                     color=color, lw=1.0))

    frozen, head, loss = "#dde8f5", "#fde9c9", "#e3f2df"
    box(1, 18, 9, 6, "image x", "#eeeeee")
    stages = [(14, "stage 2\n(N, C1, h1, w1)"), (27, "stage 3\n(N, C2, h2, w2)"),
              (40, "stage 4\n(N, C3, h3, w3)")]
    arrow(10.5, 21, 13.5, 21)
    for i, (x, text) in enumerate(stages):
        box(x, 18, 10, 6, text, frozen, 7.5)
        if i < 2:
            arrow(x + 10.5, 21, x + 12.5, 21)
    box(53, 18, 9, 6, "classifier\nlogits", frozen)
    arrow(50.5, 21, 52.5, 21)
    ax.text(30, 26.5, "frozen backbone (CNN, ViT tokens, Swin channels-last -> NCHW by the adapter)",
            ha="center", fontsize=8, color="#335")
    for x, _ in stages:
        box(x, 6, 10, 6, "1x1 conv, BN,\n+skip, ReLU,\nupsample", head, 6.8)
        arrow(x + 5, 17.5, x + 5, 12.5, color="#a66")
    box(53, 4, 11, 10, "concat ->\n1x1 conv\n(sum C -> K)\none map per class", head, 7.2)
    for x, _ in stages:
        ax.plot([x + 5, x + 5], [5.5, 2.5], color="#a66", lw=1.0)
    ax.plot([19, 58.5], [2.5, 2.5], color="#a66", lw=1.0)
    arrow(58.5, 2.5, 58.5, 3.5, color="#a66")
    ax.text(36, 0.3, "attention head (the only trained part)", ha="center", fontsize=8,
            color="#844")
    box(69, 4, 10, 10, "mask m =\nsigmoid(c_y)\n(y = model's\nown top-1)", head, 7.2)
    arrow(64.5, 9, 68.5, 9, color="#a66")
    box(69, 26, 10, 8, "x * m\n(masked image)", "#eeeeee", 7.5)
    arrow(74, 14.5, 74, 25.5, color="#a66")
    box(84, 26, 14, 8, "frozen classifier\nagain -> CE(., y)", frozen, 7.5)
    arrow(79.5, 30, 83.5, 30)
    box(84, 4, 14, 14, "loss =\n1.5 CE(masked, y)\n+ 2 mean((m+5e-4)^0.3)\n+ 0.01 smoothness(m)",
        loss, 7.2)
    arrow(91, 25.5, 91, 18.5)
    arrow(62.5, 21, 83.5, 28, color="#555", style="-|>")
    ax.text(63, 25.5, "y = top-1", fontsize=7, color="#555")
    ax.text(50, 39, "training (unlabelled images): the map of the predicted class must keep the "
            "prediction while staying small and smooth", ha="center", fontsize=8.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def small_png(png: bytes, colors: int = 256) -> bytes:
    """``png`` with a palette of ``colors`` colours: a quarter of the size, no visible change here
    (the octree quantiser keeps the images' colours; median cut washed them out)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors, method=Image.Quantize.FASTOCTREE).save(out, format="PNG", optimize=True)
    return out.getvalue()


def draw_examples(path: Path = EXAMPLES_OUT, images: int = 6, seed: int = 0) -> Path:
    """T-TAME beside Grad-CAM on ``images`` held-out test images of the demo's data set."""
    import torch
    from torch.utils.data import DataLoader

    from ttame_attr import TTAME
    from ttame_attr.classifiers import Normalized, load_reference_classifier
    from ttame_attr.data import MEAN, STD, SyntheticShapes
    from ttame_attr.demo._figures import explanations_figure
    from ttame_attr.demo._gradcam import gradcam_backend, gradcam_maps

    torch.manual_seed(seed)
    net, _ = load_reference_classifier()
    model = Normalized(net, MEAN, STD).eval()
    train = SyntheticShapes(2048, 64, seed, "train").generate(range(2048))[0]
    x, y, masks = SyntheticShapes(images, 64, seed, "test").generate(range(images))
    explainer = TTAME(model, input_size=(3, 64, 64))
    explainer.fit(DataLoader(train, batch_size=32, shuffle=True, drop_last=True,
                             generator=torch.Generator().manual_seed(seed)), epochs=4, progress=False)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    backend = gradcam_backend()
    maps = {"T-TAME": explainer.attribute(x, target=predicted),
            "Grad-CAM": gradcam_maps(model, net.layer4, x, predicted, backend)}
    png, _ = explanations_figure(x, y, predicted, masks, maps, cell_size=1.05, dpi=72)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(small_png(png))
    return path


def draw_audit(report: Path, path: Path = AUDIT_OUT, width: int = 1100, height: int = 2016,
               scale: float = 0.75) -> Path:
    """Screenshot the top ``height`` pixels of ``report`` (an ``audit.html``) in headless Chromium
    at ``width`` pixels, scaled by ``scale``: the summary, the ranked classes and the first
    flagged class (its mean map, its groups and the images to look at)."""
    import io
    import shutil
    import subprocess
    import tempfile

    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--no-first-run", f"--user-data-dir={Path(tmp) / 'profile'}",
                        f"--window-size={width},{height + 200}", "--virtual-time-budget=10000",
                        f"--screenshot={shot}", Path(report).resolve().as_uri()],
                       check=True, capture_output=True, timeout=180)
        image = Image.open(shot).convert("RGB").crop((0, 0, width, height))
    image = image.resize((round(width * scale), round(height * scale)), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG")
    path.write_bytes(small_png(out.getvalue()))
    return path


if __name__ == "__main__":
    which = sys.argv[1:] or ["diagram", "examples"]
    if "diagram" in which:
        print(draw())
    if "examples" in which:
        print(draw_examples())
    if "audit" in which:
        print(draw_audit(Path(which[which.index("audit") + 1])))
