"""Device check for ttame_attr.metrics (a script, not collected by pytest).

Runs every metric on a random-weight torchvision ResNet-18 at 224x224 on CUDA (CPU fallback),
prints timings, and compares the fp32 imputer on the device against a float64 CPU solve.
Usage from the repository root: ``PYTHONPATH=$PWD python3 benchmarks/metrics_device_check.py``;
``SIZE`` and ``N`` environment variables shrink it (e.g. ``SIZE=32 N=4`` on a CPU).
"""

import logging
import os
import time

import torch
import torchvision

from ttame_attr import metrics as M


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    S = int(os.environ.get("SIZE", "224"))
    N = int(os.environ.get("N", "16"))
    print(
        "device", dev, torch.__version__, torch.cuda.get_device_name() if dev.type == "cuda" else ""
    )
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(dev)
    x = torch.randn(N, 3, S, S, device=dev)

    def saliency(inp, target):
        inp = inp.requires_grad_(True)
        out = model(inp)
        out.gather(1, target.view(-1, 1)).sum().backward()
        return inp.grad.abs().amax(dim=1, keepdim=True)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(name, fn):
        sync()
        t = time.perf_counter()
        r = fn()
        sync()
        print(f"{name}: {time.perf_counter() - t:.2f}s")
        return r

    maps = timed("saliency", lambda: saliency(x.clone(), model(x).argmax(1)))
    lowres = torch.nn.functional.avg_pool2d(maps, 8)  # smoother, CAM-like
    r = timed("ad_ic", lambda: M.average_drop_increase(model, x, lowres))
    print(" AD", r.average_drop, "IC", r.increase_in_confidence, r.masked_probs.device)
    r = timed("ad_ic explain fn", lambda: M.average_drop_increase(model, x, saliency))
    g = torch.Generator(device=dev).manual_seed(0)
    r = timed("road (7 fractions, MoRF+LeRF)", lambda: M.road(model, x, lowres, generator=g))
    print(" morf", r.morf_accuracy.tolist(), "lerf", r.lerf_accuracy.tolist(), r.morf_probs.device)
    r = timed("deletion (S steps)", lambda: M.deletion(model, x, lowres, max_batch=256))
    print(" del auc", r.auc, r.curves.shape, r.curves.device)
    r = timed("insertion (S steps)", lambda: M.insertion(model, x, lowres, max_batch=256))
    print(" ins auc", r.auc)
    masks = torch.zeros(N, S, S, dtype=torch.bool, device=dev)
    masks[:, S // 4 : S // 2, S // 4 : S // 2] = True
    print(
        " pointing",
        M.pointing_game(lowres, masks, tolerance=15).accuracy,
        "energy",
        M.energy_pointing_game(lowres, masks).energy,
    )
    loader = [(x[: N // 2], None), (x[N // 2 :], None)]
    out = timed(
        "evaluate ad_ic+road",
        lambda: M.evaluate(model, loader, saliency, metrics=["ad_ic", "road"]),
    )
    # imputer: GPU vs CPU (float64 reference), big blob hole
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    blob = ((yy - S * 0.4) ** 2 + (xx - S * 0.55) ** 2).float().flatten().argsort()
    img = torch.rand(4, 3, S, S)
    for frac in (0.1, 0.5, 0.9):
        rem = torch.zeros(S * S, dtype=torch.bool)
        rem[blob[: int(frac * S * S)]] = True
        rem = rem.view(1, S, S).expand(4, S, S)
        ref = M.noisy_linear_impute(img.double(), rem, noise_std=0.0, tol=1e-10, max_iter=20000)
        out = timed(
            f"impute 4x3x{S}x{S} {frac:.0%} blob on {dev}",
            lambda rem=rem: M.noisy_linear_impute(img.to(dev), rem.to(dev), noise_std=0.0),
        )
        print("  max |gpu fp32 - cpu fp64| =", (out.cpu().double() - ref).abs().max().item())
    print("peak mem GiB", torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else 0)


if __name__ == "__main__":
    main()
