# ruff: noqa
"""Throw-away tuning script run on the device machine (accuracy per config + CPU step speed)."""

import logging
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, ".")
logging.basicConfig(level=logging.INFO, format="%(message)s")
from ttame_attr.data._classifiers import _build, train_classifier
from ttame_attr.data._synthetic import SyntheticShapes

dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_num_threads(16)
NTR = int(sys.argv[1])
only = sys.argv[2:]
t = time.time()


def gen(n, split):
    ds = SyntheticShapes(n, split=split)
    out = [ds.generate(range(s, min(s + 2000, n))) for s in range(0, n, 2000)]
    return torch.cat([o[0] for o in out]).to(dev), torch.cat([o[1] for o in out]).to(dev)


Xtr, Ytr = gen(NTR, "train")
Xva, Yva = gen(2000, "val")
print("gen", time.time() - t, flush=True)


class Loader:
    def __init__(s, X, Y, n, bs, shuffle):
        s.X, s.Y, s.n, s.bs, s.shuffle = X, Y, n, bs, shuffle
        s.g = torch.Generator().manual_seed(0)

    def __len__(s):
        return (s.n + s.bs - 1) // s.bs

    def __iter__(s):
        idx = (
            torch.randperm(s.n, generator=s.g).to(dev)
            if s.shuffle
            else torch.arange(s.n, device=dev)
        )
        for i in range(0, s.n, s.bs):
            j = idx[i : i + s.bs]
            yield s.X[j], s.Y[j]


C = {
    "vit_s64": (
        "vit",
        dict(hidden_dim=64, num_layers=4, num_heads=4, mlp_dim=128, stem=(16, 32, 64)),
        8,
        2e-3,
    ),
    "vit_s96L3": (
        "vit",
        dict(hidden_dim=96, num_layers=3, num_heads=4, mlp_dim=192, stem=(24, 48, 96)),
        8,
        2e-3,
    ),
    "swin_stem": (
        "swin",
        dict(embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8), stem=(16,)),
        8,
        1e-3,
    ),
    "swin_stem_max": (
        "swin",
        dict(embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8), stem=(16,), global_pool="max"),
        6,
        1e-3,
    ),
    "swin_max": (
        "swin",
        dict(embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8), global_pool="max"),
        6,
        1e-3,
    ),
    "swin_plain_lr5e4": (
        "swin",
        dict(embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8)),
        8,
        5e-4,
    ),
}
for name in only:
    arch, cfg, ep, lr = C[name]
    torch.manual_seed(0)
    m = _build(arch, 8, 64, **cfg)
    torch.set_num_threads(2)
    mc = _build(arch, 8, 64, **cfg)
    opt = torch.optim.AdamW(mc.parameters())
    x = torch.randn(128, 3, 64, 64)
    y = torch.randint(0, 8, (128,))
    ts = []
    for i in range(4):
        t0 = time.time()
        l = F.cross_entropy(mc(x), y)
        opt.zero_grad()
        l.backward()
        opt.step()
        ts.append(time.time() - t0)
    ips = 128 / min(ts[1:])
    torch.set_num_threads(16)
    h = train_classifier(
        m,
        Loader(Xtr, Ytr, NTR, 128, True),
        Loader(Xva, Yva, 2000, 500, False),
        ep,
        lr=lr,
        device=dev,
    )
    print(
        f"RESULT {name}: params {sum(p.numel() for p in m.parameters())} train {['%.2f' % a for a in h.train_accuracy]} val {['%.3f' % a for a in h.val_accuracy]} gpu_s {h.seconds:.1f} cpu2_img_s {ips:.0f} est_cpu_s {NTR * ep / ips:.0f}",
        flush=True,
    )
