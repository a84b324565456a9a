"""Explain a folder of images with Ray Data and write the explanations to Parquet.

    pip install "ttame-attr[ray]"
    python examples/ray_explain_images.py IMAGES/ --head head.pt --out explanations/ \
        [--model resnet50] [--top-k 3] [--concurrency 2]

``ray.data.read_images`` decodes the images in parallel; each actor of ``map_batches`` runs the
classifier with its T-TAME head (``TTAME.as_module``) on its batches and returns the columns of
the explanation store: ``path``, ``classes``, ``probabilities``, ``maps`` (float16 bytes at the
head's map size, see ``ttame_attr.dataset.decode_maps``) and the per-map statistics. The model
is loaded once per actor (a factory function), not shipped from the driver.
"""

from __future__ import annotations

import argparse
from functools import partial


def load_explainer(model_name: str, head: str):
    """The torchvision classifier with its trained head (runs in each Ray actor)."""
    import torchvision

    from ttame_attr import TTAME

    model = getattr(torchvision.models, model_name)(weights="DEFAULT").eval()
    return TTAME.load(head, model)


def main() -> None:
    import ray

    from ttame_attr.integrations.ray import ExplainBatch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", help="a folder of images (read recursively)")
    p.add_argument("--head", required=True, help="head file written by `ttame fit` / TTAME.save")
    p.add_argument("--model", default="resnet50", help="torchvision model name (default resnet50)")
    p.add_argument("--out", default="explanations", help="output folder of Parquet files")
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=2, help="explaining actors")
    args = p.parse_args()

    ray.init()
    ds = ray.data.read_images(args.images, include_paths=True, mode="RGB")
    explained = ds.map_batches(
        ExplainBatch,
        fn_constructor_kwargs={"explainer": partial(load_explainer, args.model, args.head),
                               "top_k": args.top_k},
        batch_size=args.batch_size, concurrency=args.concurrency, batch_format="numpy",
    )
    explained.write_parquet(args.out)
    print(f"wrote the explanations to {args.out}")


if __name__ == "__main__":
    main()
