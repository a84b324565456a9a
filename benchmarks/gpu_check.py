"""CUDA checks that need a GPU: device placement, mixed precision training, CPU/GPU agreement.

Run on a machine with a CUDA GPU:

    python benchmarks/gpu_check.py [--json out.json]

Prints one line per check (PASS/FAIL with the measured figures) and exits non-zero on a failure.
Nothing here runs in the test suite, which must pass without a GPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

import torch
import torchvision

from ttame_attr import TTAME


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _snapshot(model: torch.nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "hooks": sum(len(m._forward_hooks) for m in model.modules()),
    }


def _same(a: dict, b: dict) -> bool:
    return (
        a["training"] == b["training"]
        and a["requires_grad"] == b["requires_grad"]
        and a["hooks"] == b["hooks"]
        and all(torch.equal(v, b["state"][k]) for k, v in a["state"].items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--models", default="resnet50,vit_b_16,swin_t")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 2
    # Compare float32 against float32: no TF32 shortcuts in the agreement check.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results: list[dict] = []
    failed = False

    def record(name: str, ok: bool, **figures) -> None:
        nonlocal failed
        failed |= not ok
        results.append({"check": name, "ok": ok, **figures})
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in figures.items())
        print(f"{'PASS' if ok else 'FAIL'}  {name}  {shown}", flush=True)

    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}", flush=True)
    for name in args.models.split(","):
        torch.manual_seed(0)
        cpu_model = torchvision.models.get_model(name, weights=None).eval()
        gpu_model = copy.deepcopy(cpu_model).cuda()
        before = _snapshot(gpu_model)
        explainer = TTAME(gpu_model)
        x = torch.randn(8, 3, 224, 224, device="cuda")
        batches = [torch.randn(8, 3, 224, 224, device="cuda") for _ in range(3)]

        # 1. mixed-precision training on CUDA (bf16 autocast by default)
        history = explainer.fit(batches, epochs=1, progress=False)
        losses_finite = all(
            torch.isfinite(torch.tensor(v)).item() for v in history.as_dicts()[0].values()
            if isinstance(v, float)
        )
        record(f"{name}: fit amp=auto (dtype bfloat16) on cuda", losses_finite,
               loss=history[0].loss, fidelity=history[0].fidelity)

        # 2. maps on the GPU, on the model's device, equal to the CPU computation
        maps = explainer.attribute(x, target=3, scale="raw")
        record(f"{name}: attribute output on cuda", maps.device.type == "cuda",
               shape=str(tuple(maps.shape)))
        cpu_explainer = TTAME(cpu_model, input_size=explainer.input_size)
        cpu_explainer.load_state_dict({k: v.cpu() for k, v in explainer.state_dict().items()})
        cpu_maps = cpu_explainer.attribute(x.cpu(), target=3, scale="raw")
        err = _rel_err(maps, cpu_maps)
        record(f"{name}: cuda == cpu (float32)", err < 1e-4, rel_err=err)

        # 3. five targets in one pass equal five single-target passes
        targets = torch.arange(5, device="cuda").repeat(8, 1)
        five = explainer.attribute(x, target=targets, scale="raw")
        singles = torch.cat([explainer.attribute(x, target=k, scale="raw") for k in range(5)], 1)
        err = _rel_err(five, singles)
        record(f"{name}: (N, 5) target == 5 single targets", err < 1e-5, rel_err=err)

        # 4. attribute under the user's autocast and under inference_mode
        with torch.autocast("cuda", dtype=torch.bfloat16), torch.inference_mode():
            amp_maps = explainer.attribute(x, target=3, scale="raw")
        err = _rel_err(amp_maps.float(), maps)
        record(f"{name}: attribute under bf16 autocast", err < 5e-2, rel_err=err)

        record(f"{name}: model untouched", _same(before, _snapshot(gpu_model)))
        del explainer, cpu_explainer, gpu_model
        torch.cuda.empty_cache()

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
