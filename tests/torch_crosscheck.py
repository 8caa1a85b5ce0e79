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
    from torch.distributions import NegativeBinomial, Normal, Poisson, kl_divergence

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import safetensors_np
except ImportError as e:  # pragma: no cover
    print(f"SKIP: PyTorch/numpy not available ({e}); install with: sudo apt-get install python3-torch")
    sys.exit(77)

RTOL, ATOL = 1e-9, 1e-12


def read_safetensors(path):
    tensors, meta = safetensors_np.read_safetensors(path)
    return {name: torch.from_numpy(arr) for name, arr in tensors.items()}, meta


def activation(name):
    return {
        "relu": F.relu,
        "tanh": torch.tanh,
        "leaky_relu": lambda v: F.leaky_relu(v, 0.01),
        "softplus": F.softplus,
    }[name]


def torch_loss(t, cfg, pass_name):
    """Recomputes a case's terms with torch.nn.functional and torch.distributions and lets
    autograd differentiate the batch mean of the pass's loss:
      elbo:  recon + beta KL, z = mu + std eps (the reparameterization gradient);
      score: the same loss; the decoder sees z as a constant, and the encoder's gradient is
             the score-function surrogate (-log p(x|z)) log q(z|x) with both held fixed in z
             and the first factor a constant, plus beta times the KL's own gradient;
      iwae:  -(log mean_k p(x, z_k) / q(z_k|x)), z_k = mu + std eps_k, differentiated whole.
    Returns recon, kl, the IWAE bounds (or None) and the gradients by name."""
    m = cfg["model"]
    act = activation(m["activation"])
    L, Z = m["samples"], m["latent"]
    p = {k: v.clone().requires_grad_(True) for k, v in t.items()
         if not k.startswith("grad.") and k not in ("x", "eps", "recon", "kl", "bound")}
    x, eps = t["x"], t["eps"]
    D = m["input_dim"]
    x, c = x[:, :D], x[:, D:]  # a conditional model's rows: the features, then the condition
    h = torch.log1p(x) if m.get("log1p_input") else x  # the encoder's input; the likelihood sees x
    if c.shape[1]:
        h = torch.cat([h, c], dim=1)  # the encoder reads [x, c]
    for i in range(len(m["hidden"])):
        h = act(F.linear(h, p[f"encoder.{i}.weight"], p[f"encoder.{i}.bias"]))
    head = F.linear(h, p["encoder.head.weight"], p["encoder.head.bias"])
    mu, logvar = head[:, :Z], head[:, Z:]
    std = torch.exp(0.5 * logvar)
    mu_rows, std_rows = mu.repeat_interleave(L, dim=0), std.repeat_interleave(L, dim=0)
    z = mu_rows + std_rows * eps
    if pass_name == "score":
        z = z.detach()
    a = z if not c.shape[1] else torch.cat([z, c.repeat_interleave(L, dim=0)], dim=1)  # the decoder reads [z, c]
    for i in range(len(m["decoder_hidden"])):
        a = act(F.linear(a, p[f"decoder.{i}.weight"], p[f"decoder.{i}.bias"]))
    out = F.linear(a, p["decoder.out.weight"], p["decoder.out.bias"])
    out, zi_out = out[:, :D], out[:, D:]  # zero-inflation logits per item, if the decoder gives them
    xr = x.repeat_interleave(L, dim=0)
    if m.get("library_size"):  # scVI's library size: log of each item's total count (at least 1)
        out = out + torch.log(torch.clamp(xr.sum(1, keepdim=True), min=1.0))
    if m["likelihood"] == "bernoulli":
        logp = -F.binary_cross_entropy_with_logits(out, xr, reduction="none").sum(1)
    elif m["likelihood"] == "poisson":  # the decoder's output is the log-rate
        logp = Poisson(torch.exp(out)).log_prob(xr).sum(1)
    elif m["likelihood"] in ("negative-binomial", "zinb"):  # log-mean o, log inverse dispersion t: logits o - t
        t = p["decoder.log_theta"]
        log_nb = NegativeBinomial(total_count=torch.exp(t).expand_as(out), logits=out - t).log_prob(xr)
        if m["likelihood"] == "zinb":  # written out: pi = sigmoid(w) structural zeros
            # per feature, or per item: the decoder's outputs [D, 2D)
            w = p["decoder.zi_logit"].expand_as(out) if "decoder.zi_logit" in p else zi_out
            zero = torch.logaddexp(F.logsigmoid(w), F.logsigmoid(-w) + log_nb)
            log_nb = torch.where(xr == 0, zero, F.logsigmoid(-w) + log_nb)
        logp = log_nb.sum(1)
    else:
        if m["learn_sigma"]:
            scale = torch.exp(0.5 * p["decoder.logvar"]).expand_as(out)
        else:
            scale = torch.full_like(out, m["sigma"])
        logp = Normal(out, scale).log_prob(xr).sum(1)
    recon = -logp.view(-1, L).mean(1)
    kl = kl_divergence(Normal(mu, std), Normal(torch.zeros_like(mu), torch.ones_like(std))).sum(1)
    bound = None
    if pass_name == "elbo":
        loss = (recon + m["beta"] * kl).mean()
    elif pass_name == "score":
        log_q = Normal(mu_rows, std_rows).log_prob(z).sum(1)
        surrogate = ((-logp).detach() * log_q).view(-1, L).mean(1)
        loss = (recon + surrogate + m["beta"] * kl).mean()
    elif pass_name == "iwae":
        log_w = logp + Normal(torch.zeros_like(z), torch.ones_like(z)).log_prob(z).sum(1) \
            - Normal(mu_rows, std_rows).log_prob(z).sum(1)
        bound = torch.logsumexp(log_w.view(-1, L), dim=1) - math.log(L)
        loss = -bound.mean()
    else:
        raise ValueError(f"unknown pass {pass_name!r}")
    loss.backward()
    return recon.detach(), kl.detach(), None if bound is None else bound.detach(), {k: v.grad for k, v in p.items()}


def torch_optimizer(param, train):
    """The torch.optim optimizer the configuration's `optimizer` names, with its settings;
    returns it and the names of its state tensors that are the CPU path's slots s1 and s2."""
    kind, lr = train["optimizer"], train["lr"]
    betas, eps = (train["adam_beta1"], train["adam_beta2"]), train["eps"]
    if kind == "adam":
        return torch.optim.Adam([param], lr=lr, betas=betas, eps=eps), {"s1": "exp_avg", "s2": "exp_avg_sq"}
    if kind == "adamw":
        return (torch.optim.AdamW([param], lr=lr, betas=betas, eps=eps, weight_decay=train["weight_decay"]),
                {"s1": "exp_avg", "s2": "exp_avg_sq"})
    if kind == "sgd":
        return torch.optim.SGD([param], lr=lr, momentum=train["momentum"]), {"s1": "momentum_buffer"}
    if kind == "rmsprop":
        return torch.optim.RMSprop([param], lr=lr, alpha=train["rmsprop_alpha"], eps=eps), {"s2": "square_avg"}
    raise ValueError(f"unknown optimizer {kind!r}")


def check_optimizer(t, cfg):
    """Replays the case's gradients and learning rates through torch.optim; returns the
    (name, ours, torch's) pairs to compare: the parameters and the state after the last step."""
    train = cfg["train"]
    param = torch.nn.Parameter(t["p0"].clone())
    opt, slots = torch_optimizer(param, train)
    for g, lr in zip(t["grads"], t["lrs"].tolist()):
        for group in opt.param_groups:
            group["lr"] = lr
        param.grad = g.clone()
        opt.step()
    state = opt.state[param]
    checks = [("params", t["p"], param.detach())]
    checks += [(f"{slot} ({name})", t[slot], state[name]) for slot, name in slots.items()]
    return train["optimizer"], checks


def close(a, b):
    a, b = a.double(), b.double()
    ok = torch.all(torch.abs(a - b) <= ATOL + RTOL * torch.abs(b)).item() and torch.isfinite(a).all().item()
    worst = (torch.abs(a - b) / (ATOL + RTOL * torch.abs(b))).max().item() if a.numel() else 0.0
    return ok, worst


def report(line, case, checks):
    """Compares each (name, ours, torch's) triple; prints the case's line; returns the mismatches."""
    failures, worst_all = 0, 0.0
    for name, ours, theirs in checks:
        ok, worst = close(ours, theirs)
        worst_all = max(worst_all, worst)
        if not ok:
            failures += 1
            print(f"MISMATCH {case} {name}: worst element used {100 * worst:.1f}% of the allowance")
    print(f"{line}: {len(checks)} tensors, worst {100 * worst_all:.3f}% of rtol {RTOL}")
    return failures


def main():
    if len(sys.argv) != 2:
        print("usage: torch_crosscheck.py PATH_TO_torch_dump", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.argv[1], d], check=True)
        files = sorted(Path(d).glob("case*.safetensors"), key=lambda f: int(f.stem[4:]))
        opt_files = sorted(Path(d).glob("opt*.safetensors"), key=lambda f: int(f.stem[3:]))
        if not files or not opt_files:
            print("no cases were written" if not files else "no optimizer cases were written")
            return 1
        passes = set()
        for f in files:
            t, meta = read_safetensors(f)
            cfg = json.loads(meta["config"])
            pass_name = meta["pass"]
            passes.add(pass_name)
            recon, kl, bound, grads = torch_loss(t, cfg, pass_name)
            checks = [("recon", t["recon"], recon), ("kl", t["kl"], kl)]
            if bound is not None:
                checks.append(("bound", t["bound"], bound))
            checks += [(f"grad {k}", t["grad." + k], g) for k, g in grads.items()]
            m = cfg["model"]
            failures += report(f"{f.name}: {pass_name:5s} {m['activation']:10s} {m['likelihood']:9s} "
                               f"learn_sigma={m['learn_sigma']!s:5s} L={m['samples']} beta={m['beta']} "
                               f"hidden={m['hidden']}/{m['decoder_hidden']}"
                               + (f" condition={m['condition_kind']}x{m['condition_dim']}" if m.get("condition_dim") else "")
                               + (" log1p" if m.get("log1p_input") else "") + (" library" if m.get("library_size") else "")
                               + (" zi per item" if m.get("zero_inflation") == "item" else ""),
                               f.name, checks)
        for f in opt_files:
            t, meta = read_safetensors(f)
            kind, checks = check_optimizer(t, json.loads(meta["config"]))
            failures += report(f"{f.name}: {kind:7s} {t['grads'].shape[0]} steps with changing learning rates",
                               f.name, checks)
        missing = {"elbo", "score", "iwae"} - passes
        if missing:
            print(f"no case of the pass(es) {sorted(missing)} was written")
            failures += 1
    print("FAILED" if failures else "all agree with PyTorch")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
