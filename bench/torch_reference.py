#!/usr/bin/env python3
"""Independent PyTorch implementation of the vae project's reference model.

It trains the same fully connected VAE as the C++ code (same data handling, layer
layout, nn.Linear default init, loss, Adam settings and batching) and is used in two ways:

  1. As a correctness reference: the C++ CPU path should reach about the same test
     -ELBO on Fashion-MNIST after the same number of epochs.
  2. As the PyTorch side of the benchmark harness: `vae bench` runs this script as a
     subprocess with --json PATH and reads the JSON object it writes.

The model and the training settings come from a vae configuration, --config FILE: a run's
OUT/config.json, or what `vae train --print-config [options]` prints ('-' reads it from
stdin). It mirrors the ELBO with the reparameterization gradient and Adam at a constant
learning rate; a configuration asking for anything else is refused.

Modes:
  (default)                  train the configuration's epochs, evaluating the test set after each.
  --bench-steps N --warmup W run W warm-up steps, then N timed steps on random batches
                             (the median step time gives the implied epoch time).
  Both may be given: the timing runs first (on its own fresh model and optimizer, so
  it does not disturb the epochs), then the epochs. A configuration of 0 epochs gives timing only.
  --serve --warmup W         timing driven by another program (`vae bench` interleaves its
                             own timed blocks with this script's): W warm-up steps, then the
                             line "@ready" on stdout; each stdin line "steps K [U]" runs untimed
                             steps for at least U milliseconds (default 0: none; else at least
                             one), then K timed steps, and answers "@ms T" (T: milliseconds for
                             the K steps, device work included); the line
                             "end" (or end of input) leaves timing mode, and the epochs follow.
                             Other stdout lines never start with @.

Only PyTorch and NumPy are needed. Works with PyTorch 1.13 (CPU) and 2.x (CPU or CUDA);
--compile needs torch.compile (PyTorch >= 2.0).

Example (the reference model, 10 epochs, as `vae train` runs it):
  build/vae train --print-config | python3 bench/torch_reference.py --config - --json /tmp/ref.json
"""

import argparse
import ast
import gzip
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class InputError(Exception):
    """A problem with the input (a file or an option) reported as one line, no traceback."""


# ----------------------------------------------------------------------------------------
# Data loading: IDX (gz or raw) and NPY (gz or raw), mirroring host/data.cpp.
# ----------------------------------------------------------------------------------------

def read_file_bytes(path):
    """Returns the file's bytes, decompressed when it is gzip (detected by its magic)."""
    if not os.path.exists(path):
        raise InputError("cannot open '%s': no such file" % path)
    if os.path.isdir(path):
        raise InputError("cannot read '%s': it is a directory, expected a file" % path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InputError("cannot open '%s': %s" % (path, e.strerror or e))
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, ValueError) as e:
            raise InputError("cannot read '%s': %s (corrupt or truncated gzip data?)" % (path, e))
    return raw


def parse_idx_images(data, path):
    """IDX uint8 images -> float32 array (count, D) in [0, 1]."""
    if len(data) < 4:
        raise InputError("'%s' is truncated: it ends after %d bytes, inside the IDX magic number"
                         % (path, len(data)))
    if data[0] != 0 or data[1] != 0:
        raise InputError("'%s' is not an IDX or NPY file: it starts with bytes %d %d, expected 0 0 "
                         "(MNIST-style images start 00 00 08 03) or \\x93NUMPY" % (path, data[0], data[1]))
    if data[2] != 0x08:
        raise InputError("'%s': IDX data type 0x%02x is not supported; expected 0x08 (uint8)" % (path, data[2]))
    ndim = data[3]
    if ndim == 0:
        raise InputError("'%s': IDX header declares 0 dimensions" % path)
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise InputError("'%s' is truncated: it ends after %d bytes, inside the IDX dimension list"
                         % (path, len(data)))
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if ndim < 2:
        raise InputError("'%s' has %d dimension; an image file needs at least 2 (count, pixels...)"
                         " - is this a labels file?" % (path, ndim))
    if any(d == 0 for d in dims[1:]):
        raise InputError("'%s': an item dimension is 0; every item dimension must be positive" % path)
    if dims[0] == 0:
        raise InputError("'%s' holds no images (its count is 0)" % path)
    count = dims[0]
    item = int(np.prod(dims[1:], dtype=np.uint64))
    expected = count * item
    payload = len(data) - header_end
    if payload < expected:
        raise InputError("'%s' is truncated: the header promises %d bytes of data but the file holds only %d"
                         % (path, expected, payload))
    if payload > expected:
        raise InputError("'%s' has more data than its header describes (%d bytes expected); the header's "
                         "dimensions are wrong or the file is corrupt" % (path, expected))
    pixels = np.frombuffer(data, dtype=np.uint8, count=expected, offset=header_end).reshape(count, item)
    return pixels.astype(np.float32) / np.float32(255.0)


def parse_npy(data, path):
    """2-D NPY (float32, float64 or uint8) -> float32 array (count, D) in [0, 1]."""
    if len(data) < 10:
        raise InputError("'%s' is truncated: it ends inside the NPY header" % path)
    major = data[6]
    if major == 1:
        header_len = int.from_bytes(data[8:10], "little")
        start = 10
    elif major in (2, 3):
        if len(data) < 12:
            raise InputError("'%s' is truncated: it ends inside the NPY header" % path)
        header_len = int.from_bytes(data[8:12], "little")
        start = 12
    else:
        raise InputError("'%s': NPY format version %d.%d is not supported (expected 1, 2 or 3)"
                         % (path, major, data[7]))
    if len(data) < start + header_len:
        raise InputError("'%s' is truncated: it ends inside the NPY header" % path)
    header_text = data[start:start + header_len].decode("latin1")
    try:
        header = ast.literal_eval(header_text.strip())
        descr, fortran, shape = header["descr"], header["fortran_order"], tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise InputError("'%s': NPY header does not parse: %s" % (path, header_text.strip()))
    if fortran:
        raise InputError("'%s' is stored in Fortran order; save it in C order (numpy.ascontiguousarray)" % path)
    if len(shape) != 2:
        raise InputError("'%s' has %d dimensions; expected a 2-D array (items, features)" % (path, len(shape)))
    if shape[0] == 0:
        raise InputError("'%s' holds no items (shape[0] is 0)" % path)
    if shape[1] == 0:
        raise InputError("'%s' has 0 features per item (shape[1] is 0)" % path)
    dtypes = {"<f4": np.float32, "<f8": np.float64, "|u1": np.uint8, "<u1": np.uint8, "u1": np.uint8}
    if descr not in dtypes:
        raise InputError("'%s': dtype '%s' is not supported; expected float32 ('<f4'), float64 ('<f8') "
                         "or uint8 ('|u1')" % (path, descr))
    dtype = np.dtype(dtypes[descr])
    n = shape[0] * shape[1]
    payload = len(data) - start - header_len
    if payload < n * dtype.itemsize:
        raise InputError("'%s' is truncated: the header promises %d bytes of data but the file holds only %d"
                         % (path, n * dtype.itemsize, payload))
    if payload > n * dtype.itemsize:
        raise InputError("'%s' has more data than its header describes (%d bytes expected)"
                         % (path, n * dtype.itemsize))
    values = np.frombuffer(data, dtype=dtype, count=n, offset=start + header_len).reshape(shape)
    if dtype == np.uint8:
        return values.astype(np.float32) / np.float32(255.0)
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        v = values[i, j]
        what = "is outside [0, 1]; scale the data to [0, 1] first" if np.isfinite(v) else "is not finite"
        raise InputError("'%s': value %g at item %d, feature %d %s" % (path, v, i, j, what))
    return values.astype(np.float32)


def load_dataset(path):
    """Reads an IDX or NPY file (either possibly gzipped) into a float32 (count, D) array."""
    data = read_file_bytes(path)
    if len(data) == 0:
        raise InputError("'%s' is empty" % path)
    if data[:6] == b"\x93NUMPY":
        return parse_npy(data, path)
    return parse_idx_images(data, path)


def binarize_static(x):
    """Threshold at 0.5: x > 0.5 -> 1, else 0."""
    return (x > 0.5).astype(np.float32)


# ----------------------------------------------------------------------------------------
# Model and loss
# ----------------------------------------------------------------------------------------

def make_activation(name):
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01)
    if name == "softplus":
        return nn.Softplus(beta=1.0)
    raise InputError("unknown activation '%s'" % name)


def make_mlp(widths, activation, activation_after_last):
    """Linear layers between consecutive widths, each followed by the activation except,
    unless activation_after_last, the final one."""
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if activation_after_last or i < len(widths) - 2:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """Encoder MLP ending in one head Linear(H, 2Z) = [mu, log sigma^2]; decoder MLP to D outputs."""

    def __init__(self, input_dim, encoder_hidden, decoder_hidden, latent, activation):
        super().__init__()
        self.latent = latent
        # Construction order (encoder layers, head, decoder layers) fixes how the seeded
        # default init is drawn; the encoder body ends with an activation before the head.
        self.encoder = make_mlp([input_dim] + encoder_hidden, activation, activation_after_last=True)
        self.head = nn.Linear(encoder_hidden[-1] if encoder_hidden else input_dim, 2 * latent)
        self.decoder = make_mlp([latent] + decoder_hidden + [input_dim], activation, activation_after_last=False)

    def encode(self, x):
        out = self.head(self.encoder(x))
        return out[:, :self.latent], out[:, self.latent:]

    def decode(self, z):
        return self.decoder(z)


def negative_elbo_sums(model, x, samples, likelihood, sigma):
    """Returns (recon_sum, kl_sum) over the batch: recon = -(1/L) sum_l log p(x|z_l), KL analytic.

    Rows of the sampled batch are ordered b*L + l (each data point replicated L times).
    """
    mu, s = model.encode(x)
    if samples > 1:
        mu_rep = mu.repeat_interleave(samples, dim=0)
        s_rep = s.repeat_interleave(samples, dim=0)
        x_rep = x.repeat_interleave(samples, dim=0)
    else:
        mu_rep, s_rep, x_rep = mu, s, x
    eps = torch.randn_like(mu_rep)
    z = mu_rep + torch.exp(0.5 * s_rep) * eps
    out = model.decode(z)
    if likelihood == "bernoulli":
        # -log p(x|z) = sum_d softplus(o_d) - x_d o_d
        recon = F.binary_cross_entropy_with_logits(out, x_rep, reduction="sum")
    else:
        # -log p(x|z) = 1/2 sum_d (x_d - m_d)^2 / sigma^2 + log(2 pi sigma^2)
        const = 0.5 * x_rep.shape[0] * x_rep.shape[1] * math.log(2.0 * math.pi * sigma * sigma)
        recon = 0.5 * F.mse_loss(out, x_rep, reduction="sum") / (sigma * sigma) + const
    if samples > 1:
        recon = recon / samples
    kl = 0.5 * (mu * mu + torch.exp(s) - s - 1.0).sum()
    return recon, kl


def make_loss_function(model, args):
    """The training objective for one batch: mean over the batch of recon + beta*KL."""
    samples, likelihood, sigma, beta = args.samples, args.likelihood, args.sigma, args.beta

    def batch_loss(x):
        recon, kl = negative_elbo_sums(model, x, samples, likelihood, sigma)
        return (recon + beta * kl) / x.shape[0]

    return batch_loss


def make_optimizer(model, args, device):
    """torch.optim.Adam(lr, betas, eps) of the configuration; returns (optimizer, variant name).

    --adam auto uses the fused CUDA kernel when on CUDA and available, else PyTorch's default.
    All variants compute the same update.
    """
    kwargs = dict(lr=args.lr, betas=(args.adam_beta1, args.adam_beta2), eps=args.eps)
    choice = args.adam
    if choice == "auto":
        choice = "fused" if device.type == "cuda" else "default"
    if choice == "fused":
        try:
            return torch.optim.Adam(model.parameters(), fused=True, **kwargs), "fused"
        except (TypeError, RuntimeError, ValueError) as e:
            if args.adam == "fused":
                raise InputError("--adam fused is not available with this PyTorch/device: %s" % e)
            choice = "foreach"
    if choice == "foreach":
        try:
            return torch.optim.Adam(model.parameters(), foreach=True, **kwargs), "foreach"
        except (TypeError, RuntimeError, ValueError) as e:
            if args.adam == "foreach":
                raise InputError("--adam foreach is not available with this PyTorch: %s" % e)
    if choice == "loop":
        return torch.optim.Adam(model.parameters(), foreach=False, **kwargs), "loop"
    return torch.optim.Adam(model.parameters(), **kwargs), "default"


# ----------------------------------------------------------------------------------------
# Training, evaluation, timing
# ----------------------------------------------------------------------------------------

class Trainer:
    """Holds the model, optimizer and (optionally compiled) loss, and runs training steps."""

    def __init__(self, args, input_dim, device):
        self.args = args
        self.device = device
        self.model = VAE(input_dim, args.hidden, args.decoder_hidden, args.latent, args.activation).to(device)
        self.optimizer, self.adam_variant = make_optimizer(self.model, args, device)
        loss_fn = make_loss_function(self.model, args)
        self.mark_cudagraph_step = None
        if args.compile:
            # Forward + loss are compiled; AOTAutograd compiles the matching backward.
            loss_fn = torch.compile(loss_fn, mode=args.compile_mode)
            if args.compile_mode == "reduce-overhead" and hasattr(torch, "compiler") and \
                    hasattr(torch.compiler, "cudagraph_mark_step_begin"):
                self.mark_cudagraph_step = torch.compiler.cudagraph_mark_step_begin
        self.loss_fn = loss_fn

    def step(self, x):
        """One Adam step on batch x; returns the batch's mean loss as a detached device tensor."""
        if self.mark_cudagraph_step is not None:
            self.mark_cudagraph_step()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(x)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def train_epoch(self, train_x, generator):
        """One pass over a fresh permutation; returns (mean train loss, seconds of training steps)."""
        n = train_x.shape[0]
        batch = self.args.batch
        self.model.train()
        synchronize(self.device)
        start = time.perf_counter()
        perm = torch.randperm(n, generator=generator).to(self.device)
        total = torch.zeros((), device=self.device)
        for begin in range(0, n, batch):
            idx = perm[begin:begin + batch]
            x = train_x.index_select(0, idx)
            total += self.step(x) * idx.shape[0]
        synchronize(self.device)
        seconds = time.perf_counter() - start
        return total.item() / n, seconds

    @torch.no_grad()
    def evaluate(self, test_x):
        """Mean test -ELBO, recon and KL per data point (eager model, one eps per point-sample)."""
        self.model.eval()
        recon_total = torch.zeros((), dtype=torch.float64, device=self.device)
        kl_total = torch.zeros((), dtype=torch.float64, device=self.device)
        for begin in range(0, test_x.shape[0], self.args.eval_batch):
            x = test_x[begin:begin + self.args.eval_batch]
            recon, kl = negative_elbo_sums(self.model, x, self.args.samples, self.args.likelihood, self.args.sigma)
            recon_total += recon.double()
            kl_total += kl.double()
        n = test_x.shape[0]
        recon_mean = recon_total.item() / n
        kl_mean = kl_total.item() / n
        return recon_mean + self.args.beta * kl_mean, recon_mean, kl_mean


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def percentile(sorted_values, q):
    """Linear-interpolated percentile (q in [0, 100]) of an already sorted list."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def fresh_timing_run(args, train_x, device):
    """A fresh model and optimizer for timing, the batch size (at most the data) and the
    generator of its random batches (seeded apart from the epochs' shuffling)."""
    torch.manual_seed(args.seed)
    trainer = Trainer(args, train_x.shape[1], device)
    n = train_x.shape[0]
    generator = torch.Generator(device="cpu")
    generator.manual_seed(args.seed + 1)
    return trainer, n, min(args.batch, n), generator


def run_step_timing(args, train_x, device):
    """W warm-up steps, then N timed steps on random full batches, on a fresh model.

    Each step includes the batch gather (as in an epoch). On CUDA, per-step times come from
    CUDA events recorded around every step (no per-step host sync); on CPU from the wall clock.
    """
    trainer, n, batch, generator = fresh_timing_run(args, train_x, device)
    total_steps = args.warmup + args.bench_steps
    indices = torch.randint(0, n, (total_steps, batch), generator=generator).to(device)

    for i in range(args.warmup):
        trainer.step(train_x.index_select(0, indices[i]))
    synchronize(device)

    step_ms = []
    if device.type == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(args.bench_steps + 1)]
        wall_start = time.perf_counter()
        events[0].record()
        for i in range(args.bench_steps):
            trainer.step(train_x.index_select(0, indices[args.warmup + i]))
            events[i + 1].record()
        torch.cuda.synchronize(device)
        wall = time.perf_counter() - wall_start
        step_ms = [events[i].elapsed_time(events[i + 1]) for i in range(args.bench_steps)]
    else:
        wall_start = time.perf_counter()
        for i in range(args.bench_steps):
            t0 = time.perf_counter()
            trainer.step(train_x.index_select(0, indices[args.warmup + i]))
            step_ms.append((time.perf_counter() - t0) * 1000.0)
        wall = time.perf_counter() - wall_start

    ordered = sorted(step_ms)
    median_ms = statistics.median(ordered)
    steps_per_epoch = math.ceil(n / args.batch)
    return {
        "warmup": args.warmup,
        "steps": args.bench_steps,
        "batch": batch,
        "median_ms": median_ms,
        "p10_ms": percentile(ordered, 10),
        "p90_ms": percentile(ordered, 90),
        "mean_ms": wall * 1000.0 / args.bench_steps,
        "samples_per_sec": batch / (median_ms / 1000.0),
        "steps_per_epoch": steps_per_epoch,
        "epoch_seconds": median_ms * steps_per_epoch / 1000.0,
    }


def serve_step_timing(args, train_x, device, commands=sys.stdin, replies=sys.stdout):
    """Timed blocks of steps on request (--serve), on a fresh model, after W warm-up steps.

    Each block's untimed steps (which bring caches and threads back after whatever ran between
    blocks) and its batches come before its clock starts; the clock covers the gathers and the
    steps, and on CUDA ends with a synchronize. Returns the blocks' per-step times for the JSON.
    """
    trainer, n, batch, generator = fresh_timing_run(args, train_x, device)

    def draw(k):
        return torch.randint(0, n, (k, batch), generator=generator).to(device)

    warm = draw(args.warmup)
    for i in range(args.warmup):
        trainer.step(train_x.index_select(0, warm[i]))
    synchronize(device)
    print("@ready", file=replies, flush=True)
    block_ms = []
    for line in commands:
        words = line.split()
        if words == ["end"]:
            break
        if len(words) not in (2, 3) or words[0] != "steps" or not all(w.isdigit() for w in words[1:]) \
                or int(words[1]) < 1:
            raise InputError("--serve: expected 'steps K [U]' (K >= 1, U >= 0) or 'end' on stdin, got %r"
                             % line.strip())
        k = int(words[1])
        warm_ms = int(words[2]) if len(words) == 3 else 0
        warm_start = time.perf_counter()
        while warm_ms > 0:
            trainer.step(train_x.index_select(0, draw(1)[0]))
            synchronize(device)
            if (time.perf_counter() - warm_start) * 1000.0 >= warm_ms:
                break
        indices = draw(k)
        synchronize(device)
        start = time.perf_counter()
        for i in range(k):
            trainer.step(train_x.index_select(0, indices[i]))
        synchronize(device)
        ms = (time.perf_counter() - start) * 1000.0
        block_ms.append(ms / k)
        print("@ms %.6f" % ms, file=replies, flush=True)
    ordered = sorted(block_ms)
    return {"warmup": args.warmup, "batch": batch, "served_blocks_ms_per_step": block_ms,
            "median_ms": statistics.median(ordered) if ordered else None}


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------

def int_in_range(lo, hi):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("'%s' is not an integer" % text)
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError("%d is out of range [%d, %s]" % (v, lo, hi if hi is not None else "inf"))
        return v
    return parse


# What this script mirrors of a vae configuration: every other setting must have the value
# given here (a run with another optimizer, say, would be compared with something else).
MIRRORED_ONLY = {
    "model": {"learn_sigma": False, "standardize": False},
    "train": {"optimizer": "adam", "lr_schedule": "constant", "objective": "elbo", "estimator": "reparam",
              "kl_warmup": 0, "schedule": "joint", "precision": "fp32"},
}
# The fields read, by section (config.json's keys; host/options_table.cpp describes them).
MODEL_FIELDS = ["hidden", "decoder_hidden", "latent", "activation", "likelihood", "sigma", "samples", "beta"]
TRAIN_FIELDS = ["train", "test", "epochs", "batch", "eval_batch", "lr", "adam_beta1", "adam_beta2", "eps", "seed",
                "binarize", "device", "threads"]


def read_config(path):
    """A vae configuration (config.json's form; '-' reads stdin) -> {"model": {...}, "train": {...}}."""
    try:
        text = sys.stdin.read() if path == "-" else open(path).read()
    except OSError as e:
        raise InputError("--config: cannot read '%s': %s" % (path, e.strerror or e))
    try:
        config = json.loads(text)
    except ValueError as e:
        raise InputError("--config '%s' is not JSON: %s" % (path, e))
    for section, fields in (("model", MODEL_FIELDS), ("train", TRAIN_FIELDS)):
        part = config.get(section) if isinstance(config, dict) else None
        if not isinstance(part, dict):
            raise InputError("--config '%s' has no '%s' object; is it a vae config.json?" % (path, section))
        missing = [f for f in fields if f not in part]
        if missing:
            raise InputError("--config '%s': the %s section lacks %s" % (path, section, ", ".join(missing)))
        for key, value in MIRRORED_ONLY[section].items():
            if part.get(key, value) != value:
                raise InputError("--config '%s': %s.%s is %s; this script mirrors only %s = %s"
                                 % (path, section, key, json.dumps(part[key]), key, json.dumps(value)))
    if config["model"]["likelihood"] not in ("bernoulli", "gaussian") or config["model"].get("log1p_input"):
        raise InputError("--config '%s': model.likelihood is %s; this script mirrors the bernoulli and gaussian "
                         "likelihoods only" % (path, json.dumps(config["model"]["likelihood"])))
    if config["train"]["binarize"] == "dynamic":
        raise InputError("--config '%s': train.binarize is \"dynamic\"; this script mirrors none and static" % path)
    for key in ("train", "test"):
        if not config["train"][key]:
            raise InputError("--config '%s': train.%s is empty; vae train --print-config writes the data paths"
                             % (path, key))
    return config


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="PyTorch reference VAE (the vae project's reference model); see the module docstring.")
    p.add_argument("--config", required=True,
                   help="the model and training settings: a vae config.json (a run's OUT/config.json, or "
                        "`vae train --print-config [options]`); '-' reads it from stdin")
    p.add_argument("--adam", choices=["auto", "default", "loop", "foreach", "fused"], default="auto",
                   help="torch.optim.Adam implementation (same math); auto = fused on CUDA, default on CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward+loss (PyTorch >= 2.0)")
    p.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune"], default="default")
    p.add_argument("--json", default=None, help="write the results as one JSON object to this path")
    p.add_argument("--limit", type=int_in_range(1, None), default=None, help="use only the first N training items")
    p.add_argument("--bench-steps", type=int_in_range(0, None), default=0,
                   help="timing mode: number of timed steps (0 = off)")
    p.add_argument("--warmup", type=int_in_range(0, None), default=20, help="timing mode: warm-up steps")
    p.add_argument("--serve", action="store_true",
                   help="timing blocks on request from stdin (see the module docstring); not with --bench-steps")
    args = p.parse_args(argv)
    if args.serve and args.bench_steps:
        p.error("--serve and --bench-steps are two timing modes; give one")
    config = read_config(args.config)
    for section, fields in (("model", MODEL_FIELDS), ("train", TRAIN_FIELDS)):
        for key in fields:
            setattr(args, key, config[section][key])
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def set_threads(threads):
    if threads <= 0:
        return
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass  # allowed only once, before any inter-op work; the intra-op count is what matters


def choose_device(name):
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("the configuration's train.device is cuda, but CUDA is not available to this PyTorch (%s)"
                             % torch.__version__)
        device = torch.device("cuda", torch.cuda.current_device())
        return device, torch.cuda.get_device_name(device)
    return torch.device("cpu"), "cpu"


def implementation_name(args):
    if not args.compile:
        return "pytorch-eager"
    return "pytorch-compile" if args.compile_mode == "default" else "pytorch-compile-" + args.compile_mode


def config_dict(args, adam_variant, train_count, test_count, input_dim):
    return {
        "train": args.train, "test": args.test, "train_count": train_count, "test_count": test_count,
        "input_dim": input_dim, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
        "adam_betas": [args.adam_beta1, args.adam_beta2], "adam_eps": args.eps, "adam_impl": adam_variant,
        "seed": args.seed, "config": args.config,
        "hidden": args.hidden, "decoder_hidden": args.decoder_hidden, "latent": args.latent,
        "activation": args.activation, "likelihood": args.likelihood, "sigma": args.sigma,
        "samples": args.samples, "beta": args.beta, "binarize": args.binarize, "eval_batch": args.eval_batch,
        "limit": args.limit, "compile": args.compile, "compile_mode": args.compile_mode if args.compile else None,
        "bench_steps": args.bench_steps, "warmup": args.warmup, "serve": args.serve,
    }


def write_json(path, result):
    try:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    except OSError as e:
        raise InputError("cannot write '%s': %s" % (path, e.strerror or e))


def main(argv):
    args = parse_args(argv)
    if args.compile and not hasattr(torch, "compile"):
        raise InputError("--compile needs torch.compile (PyTorch >= 2.0); this is PyTorch %s" % torch.__version__)
    if args.json:
        json_dir = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(json_dir):
            raise InputError("cannot write '%s': directory '%s' does not exist" % (args.json, json_dir))
    set_threads(args.threads)
    device, device_name = choose_device(args.device)

    train_np = load_dataset(args.train)
    test_np = load_dataset(args.test)
    if train_np.shape[1] != test_np.shape[1]:
        raise InputError("'%s' has %d values per item but '%s' has %d; train and test must match"
                         % (args.train, train_np.shape[1], args.test, test_np.shape[1]))
    if args.limit is not None:
        train_np = train_np[:args.limit]
    if args.binarize == "static":
        train_np, test_np = binarize_static(train_np), binarize_static(test_np)
    train_x = torch.from_numpy(np.ascontiguousarray(train_np)).to(device)
    test_x = torch.from_numpy(np.ascontiguousarray(test_np)).to(device)
    n_train, input_dim = train_x.shape

    print("pytorch %s on %s, %d thread(s), %s; train %d x %d, test %d; hidden %s, decoder %s, latent %d"
          % (torch.__version__, device_name, torch.get_num_threads(), implementation_name(args), n_train,
             input_dim, test_x.shape[0], args.hidden or "none", args.decoder_hidden or "none", args.latent),
          flush=True)

    bench = None
    if args.serve:
        bench = serve_step_timing(args, train_x, device)
    elif args.bench_steps > 0:
        bench = run_step_timing(args, train_x, device)
        print("bench: %d steps after %d warm-up, batch %d: median %.3f ms/step (p10 %.3f, p90 %.3f, mean %.3f)"
              "  -> %.2f s/epoch, %.0f samples/s"
              % (bench["steps"], bench["warmup"], bench["batch"], bench["median_ms"], bench["p10_ms"],
                 bench["p90_ms"], bench["mean_ms"], bench["epoch_seconds"], bench["samples_per_sec"]), flush=True)

    torch.manual_seed(args.seed)
    trainer = Trainer(args, input_dim, device)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(args.seed)
    epochs = []
    for epoch in range(1, args.epochs + 1):
        train_loss, seconds = trainer.train_epoch(train_x, generator)
        test_loss, test_recon, test_kl = trainer.evaluate(test_x)
        rate = n_train / seconds if seconds > 0 else float("inf")
        epochs.append({"epoch": epoch, "train_loss": train_loss, "test_loss": test_loss, "test_recon": test_recon,
                       "test_kl": test_kl, "seconds": seconds, "samples_per_sec": rate})
        print("epoch %d/%d  train -ELBO %.2f  test -ELBO %.2f (recon %.2f, KL %.2f)  %.2f s  %.0f samples/s"
              % (epoch, args.epochs, train_loss, test_loss, test_recon, test_kl, seconds, rate), flush=True)
        if not math.isfinite(train_loss):
            print("warning: the training loss is not finite; stopping", file=sys.stderr)
            break

    if args.json:
        result = {
            "implementation": implementation_name(args),
            "torch_version": torch.__version__,
            "device": device_name,
            "threads": torch.get_num_threads(),
            "config": config_dict(args, trainer.adam_variant, n_train, test_x.shape[0], input_dim),
            "epochs": epochs,
            "bench": bench,
            "final_test_loss": epochs[-1]["test_loss"] if epochs else None,
        }
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except InputError as e:
        print("torch_reference.py: error: %s" % e, file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
