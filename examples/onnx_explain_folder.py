"""Explain a folder of images with ONNX Runtime alone: no torch, no ttame_attr.

The .onnx file is one written by ``explainer.export_onnx(path)`` (or ``ttame export ... --format
onnx``): the classifier and its T-TAME head in one graph, returning ``logits``, ``classes`` and
``maps``. Its metadata gives the input size and the normalisation the images need. For each
image this writes ``<name>_overlay.png`` (the top class's map, colour-mapped and blended over
the image the model saw) and prints the top class and its probability.

    pip install onnxruntime numpy pillow
    python examples/onnx_explain_folder.py model.onnx images/ --out overlays/
    python examples/onnx_explain_folder.py model.onnx images/ --out overlays/ --no-resize

Images of another size than the model's are resized to it (bilinear, the aspect ratio is not
kept; the output says which); with ``--no-resize`` such an image is refused instead, before
anything runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_metadata(session: ort.InferenceSession) -> tuple[list[int], np.ndarray | None, np.ndarray | None]:
    """``[C, H, W]`` and the mean and std (``None``: the model takes pixels in [0, 1])."""
    meta = session.get_modelmeta().custom_metadata_map
    if "ttame_attr.input_size" not in meta:
        raise SystemExit("model: this ONNX file has no ttame_attr metadata; write it with "
                         "explainer.export_onnx(path) or `ttame export ... --format onnx`.")
    channels, height, width = json.loads(meta["ttame_attr.input_size"])
    norm = json.loads(meta.get("ttame_attr.normalization", "null"))
    if norm is None:
        return [channels, height, width], None, None
    mean, std = (np.asarray(v, dtype=np.float32).reshape(-1, 1, 1) for v in norm)
    return [channels, height, width], mean, std


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SystemExit(f"images: {folder} is not a folder.")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"images: no image in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")
    return paths


def check_sizes(paths: list[Path], width: int, height: int, resize: bool) -> dict[Path, tuple[int, int]]:
    """Each image's (width, height), read from its header; with ``resize=False`` an image of
    another size than the model's stops the script, naming it."""
    sizes = {}
    for path in paths:
        try:
            with Image.open(path) as img:
                sizes[path] = img.size
        except OSError as err:
            raise SystemExit(f"{path}: cannot read the image ({err}).") from None
        w, h = sizes[path]
        if not resize and (w, h) != (width, height):
            raise SystemExit(f"{path}: the image is {w}x{h} pixels, the model takes {width}x{height} "
                             "(width x height). Resize it, or run without --no-resize to have it resized.")
    return sizes


def load_image(path: Path, channels: int, width: int, height: int) -> Image.Image:
    """The image in the model's colour mode, at the model's size (bilinear resize if needed)."""
    with Image.open(path) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (width, height):
            img = img.resize((width, height), Image.BILINEAR)
        return img


def to_input(img: Image.Image, mean: np.ndarray | None, std: np.ndarray | None) -> np.ndarray:
    """``(1, C, H, W)`` float32: pixels in [0, 1], normalised as the model expects."""
    pixels = np.asarray(img, dtype=np.float32) / 255.0
    x = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if mean is not None:
        x = (x - mean) / std
    return x[None].astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def colour_map(m: np.ndarray) -> np.ndarray:
    """A jet-like colour map: ``(H, W)`` in [0, 1] -> ``(H, W, 3)`` RGB in [0, 1]."""
    m = np.clip(m, 0.0, 1.0)[..., None]
    centres = np.asarray([0.75, 0.5, 0.25], dtype=np.float32)  # red, green, blue
    return np.clip(1.5 - np.abs(4.0 * (m - centres)), 0.0, 1.0)


def draw_overlay(img: Image.Image, saliency: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The map (min-max scaled for contrast) colour-mapped and blended over the image."""
    if saliency.shape != (img.height, img.width):  # a file exported with upsample=False
        saliency = np.asarray(Image.fromarray(saliency.astype(np.float32)).resize(img.size, Image.BILINEAR))
    lo, hi = float(saliency.min()), float(saliency.max())
    scaled = (saliency - lo) / (hi - lo) if hi > lo else np.zeros_like(saliency)
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    blend = (1.0 - alpha) * rgb + alpha * colour_map(scaled)
    return Image.fromarray(np.round(blend * 255.0).astype(np.uint8))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("model", type=Path, help="the .onnx file written by export_onnx")
    parser.add_argument("images", type=Path, help="a folder of images")
    parser.add_argument("--out", type=Path, default=Path("onnx_explanations"), help="the overlays' folder")
    parser.add_argument("--no-resize", action="store_true",
                        help="refuse images of another size than the model's instead of resizing them")
    args = parser.parse_args(argv)

    if not args.model.is_file():
        raise SystemExit(f"model: {args.model} does not exist.")
    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    (channels, height, width), mean, std = read_metadata(session)
    input_name = session.get_inputs()[0].name
    paths = list_images(args.images)
    sizes = check_sizes(paths, width, height, resize=not args.no_resize)
    print(f"{args.model.name}: input {channels}x{height}x{width}, "
          f"normalisation {'none' if mean is None else 'mean/std from the file'}; {len(paths)} images")

    args.out.mkdir(parents=True, exist_ok=True)
    stems = [p.stem for p in paths]
    for path in paths:
        img = load_image(path, channels, width, height)
        x = to_input(img, mean, std)
        logits, classes, maps = session.run(["logits", "classes", "maps"], {input_name: x})
        top = int(classes[0, 0])
        prob = float(softmax(logits[0])[top])
        name = path.stem if stems.count(path.stem) == 1 else path.name.replace(".", "_")
        out = args.out / f"{name}_overlay.png"
        draw_overlay(img, maps[0, 0]).save(out)
        w, h = sizes[path]
        note = "" if (w, h) == (width, height) else f" (resized from {w}x{h} to {width}x{height})"
        print(f"{path.name}: class {top}, probability {prob:.4f}{note} -> {out}")


if __name__ == "__main__":
    sys.exit(main())
