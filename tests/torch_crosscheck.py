#!/usr/bin/env python3
"""Cross-check the CPU path against PyTorch, an independent implementation.

Runs tests/torch_dump (built by CMake), which writes, for many model configurations, the
parameters, inputs, noise, per-data-point reconstruction and KL terms and the gradient of
the batch loss computed by the C++ CPU path in double precision. This script rebuilds each
model with torch.nn.functional and torch.distributions (not with our formulas), evaluates
the same loss, lets autograd compute the gradients, and compares every number.

Exit codes: 0 all agree, 1 a mismatch, 77 PyTorch is not installed (ctest reports a skip).
"""
import json
import math
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.distributions import Normal, kl_divergence
except ImportError as e:  # pragma: no cover
    print(f"SKIP: PyTorch/numpy not available ({e}); install with: sudo apt-get install python3-torch")
    sys.exit(77)

RTOL, ATOL = 1e-9, 1e-12


def read_safetensors(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    dtypes = {"F64": np.float64, "F32": np.float32, "I64": np.int64}
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


def activation(name):
    return {
        "relu": F.relu,
        "tanh": torch.tanh,
        "leaky_relu": lambda v: F.leaky_relu(v, 0.01),
        "softplus": F.softplus,
    }[name]


def torch_loss(t, cfg):
    m = cfg["model"]
    act = activation(m["activation"])
    L, Z = m["samples"], m["latent"]
    p = {k: v.clone().requires_grad_(True) for k, v in t.items() if not k.startswith("grad.") and k not in ("x", "eps", "recon", "kl")}
    x, eps = t["x"], t["eps"]
    h = x
    for i in range(len(m["hidden"])):
        h = act(F.linear(h, p[f"encoder.{i}.weight"], p[f"encoder.{i}.bias"]))
    head = F.linear(h, p["encoder.head.weight"], p["encoder.head.bias"])
    mu, logvar = head[:, :Z], head[:, Z:]
    std = torch.exp(0.5 * logvar)
    z = mu.repeat_interleave(L, dim=0) + std.repeat_interleave(L, dim=0) * eps
    a = z
    for i in range(len(m["decoder_hidden"])):
        a = act(F.linear(a, p[f"decoder.{i}.weight"], p[f"decoder.{i}.bias"]))
    out = F.linear(a, p["decoder.out.weight"], p["decoder.out.bias"])
    xr = x.repeat_interleave(L, dim=0)
    if m["likelihood"] == "bernoulli":
        logp = -F.binary_cross_entropy_with_logits(out, xr, reduction="none").sum(1)
    else:
        if m["learn_sigma"]:
            scale = torch.exp(0.5 * p["decoder.logvar"]).expand_as(out)
        else:
            scale = torch.full_like(out, m["sigma"])
        logp = Normal(out, scale).log_prob(xr).sum(1)
    recon = -logp.view(-1, L).mean(1)
    kl = kl_divergence(Normal(mu, std), Normal(torch.zeros_like(mu), torch.ones_like(std))).sum(1)
    loss = (recon + m["beta"] * kl).mean()
    loss.backward()
    return recon.detach(), kl.detach(), {k: v.grad for k, v in p.items()}


def close(a, b):
    a, b = a.double(), b.double()
    ok = torch.all(torch.abs(a - b) <= ATOL + RTOL * torch.abs(b)).item() and torch.isfinite(a).all().item()
    worst = (torch.abs(a - b) / (ATOL + RTOL * torch.abs(b))).max().item() if a.numel() else 0.0
    return ok, worst


def main():
    if len(sys.argv) != 2:
        print("usage: torch_crosscheck.py PATH_TO_torch_dump", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.argv[1], d], check=True)
        files = sorted(Path(d).glob("case*.safetensors"), key=lambda f: int(f.stem[4:]))
        if not files:
            print("no cases were written")
            return 1
        for f in files:
            t, meta = read_safetensors(f)
            cfg = json.loads(meta["config"])
            recon, kl, grads = torch_loss(t, cfg)
            checks = [("recon", recon, t["recon"]), ("kl", kl, t["kl"])]
            checks += [(f"grad {k}", g, t["grad." + k]) for k, g in grads.items()]
            worst_all = 0.0
            for name, ours_torch, ours_cpp in checks:
                ok, worst = close(ours_cpp, ours_torch)
                worst_all = max(worst_all, worst)
                if not ok:
                    failures += 1
                    print(f"MISMATCH {f.name} {name}: worst element used {100 * worst:.1f}% of the allowance")
            m = cfg["model"]
            print(f"{f.name}: {m['activation']:10s} {m['likelihood']:9s} learn_sigma={m['learn_sigma']!s:5s} "
                  f"L={m['samples']} beta={m['beta']} hidden={m['hidden']}/{m['decoder_hidden']}: "
                  f"{len(checks)} tensors, worst {100 * worst_all:.3f}% of rtol {RTOL}")
    print("FAILED" if failures else "all agree with PyTorch")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
