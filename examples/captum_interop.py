"""T-TAME inside Captum: NoiseTunnel, sensitivity_max, infidelity and visualize_image_attr.

``TTAME`` is a Captum ``Attribution``: same ``attribute(inputs, target=...)`` call, tensors in
and out (tuples in, tuples out), so Captum's wrappers and metrics take it as it is. Two details:
its maps are ``(N, 1, H, W)``, so ``infidelity`` (which wants the input's shape) gets them
expanded to ``(N, 3, H, W)``; and Captum's drawing function wants numpy channels-last arrays,
which :func:`ttame_attr.viz.to_captum_vis` makes.

    python examples/captum_interop.py [out.png]
"""

from __future__ import annotations

import sys

import torch
import torchvision
from captum.attr import NoiseTunnel, visualization
from captum.metrics import infidelity, sensitivity_max

from ttame_attr import TTAME
from ttame_attr.viz import to_captum_vis


def main(out: str | None = None) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    explainer = TTAME(model, input_size=(3, 64, 64))
    explainer.fit([torch.rand(8, 3, 64, 64)], epochs=1, progress=False)
    x = torch.rand(2, 3, 64, 64)
    target = model(x).argmax(dim=1)

    # SmoothGrad-style averaging of T-TAME maps over noisy copies of the input.
    smooth = NoiseTunnel(explainer).attribute(x, nt_type="smoothgrad", nt_samples=3,
                                              stdevs=0.1, target=target)
    print("NoiseTunnel maps", tuple(smooth.shape))

    # Sensitivity: how much the maps change under small input perturbations.
    sens = sensitivity_max(explainer.attribute, x, target=target, n_perturb_samples=3)
    print("sensitivity_max", [round(v, 4) for v in sens.tolist()])

    # Infidelity needs attributions of the input's shape: expand (N, 1, H, W) -> (N, 3, H, W).
    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = 0.05 * torch.randn_like(inputs)
        return noise, inputs - noise

    maps = explainer.attribute(x, target=target)
    infid = infidelity(model, perturb, x, maps.expand(-1, 3, -1, -1), target=target,
                       n_perturb_samples=4)
    print("infidelity", [round(v, 4) for v in infid.tolist()])

    # Captum's visualisation: numpy (H, W, 1) attribution and (H, W, 3) image.
    attr, image = to_captum_vis(maps[0:1], x[0:1])
    fig, _ = visualization.visualize_image_attr(attr, image, method="blended_heat_map",
                                                sign="positive", use_pyplot=False,
                                                title="T-TAME (Captum visualisation)")
    if out:
        fig.savefig(out)
        print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
