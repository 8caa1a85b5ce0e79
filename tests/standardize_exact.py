#!/usr/bin/env python3
"""Real-valued data under the Gaussian likelihood, with and without --standardize.

Draws probabilistic-PCA data whose values lie far outside [0, 1], trains a linear model
(vae train --likelihood gaussian --learn-sigma --hidden none --decoder-hidden none) on it
with the vae binary, and checks what vae eval reports:
  - its exact log p(x) equals the closed form computed here, with numpy, from the
    checkpoint's own tensors (read without the library): to 1e-6 relative. With
    --standardize, x = mean + std * x', so p(x) = N(mean + std * b, S (W W^T + diag(s^2)) S),
    S = diag(std): the Jacobian of the scaling is counted;
  - its importance-sampling estimate (K = 5000) is within 0.05 nats of the exact value;
  - the standardized model's file holds the training set's scaling (mean and population std
    per feature, computed here from the data).

    standardize_exact.py VAE_BINARY     exit 0: all hold, 1: not, 77: numpy missing (skip)
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import safetensors_np
except ImportError as e:  # pragma: no cover
    print(f"SKIP: numpy not available ({e}); install with: sudo apt-get install python3-numpy")
    sys.exit(77)

D, Z, N_TRAIN, N_TEST = 10, 3, 3000, 1000


def ppca_data(rng):
    w = rng.normal(size=(D, Z)) * 3.0
    mean = rng.normal(size=D) * 4.0
    noise = rng.uniform(0.3, 0.8, size=D)

    def draw(n):
        z = rng.normal(size=(n, Z))
        return (z @ w.T + mean + rng.normal(size=(n, D)) * noise).astype(np.float32)

    return draw(N_TRAIN), draw(N_TEST)


def closed_form(tensors, x):
    """Sum over the rows of x of log N(x; mean, C), the model's marginal, in x's units."""
    w = tensors["decoder.out.weight"].astype(np.float64)  # (D, Z)
    b = tensors["decoder.out.bias"].astype(np.float64)
    var = np.exp(tensors["decoder.logvar"].astype(np.float64))
    cov = w @ w.T + np.diag(var)
    mean = b
    if "standardize.std" in tensors:
        s = tensors["standardize.std"].astype(np.float64)
        mean = tensors["standardize.mean"].astype(np.float64) + s * b
        cov = cov * np.outer(s, s)
    r = x.astype(np.float64) - mean
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    q = np.einsum("nd,nd->n", r @ np.linalg.inv(cov), r)
    return float(np.sum(-0.5 * (D * np.log(2 * np.pi) + logdet + q)))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: standardize_exact.py VAE_BINARY")
    vae = sys.argv[1]
    train, test = ppca_data(np.random.default_rng(20261204))
    assert train.min() < -5 and train.max() > 5, "the data must be far outside [0, 1]"
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "train.npy", train)
        np.save(tmp / "test.npy", test)
        for standardize in (False, True):
            out = tmp / ("std" if standardize else "raw")
            cmd = [vae, "train", "--train", str(tmp / "train.npy"), "--test", str(tmp / "test.npy"), "--likelihood",
                   "gaussian", "--learn-sigma", "--hidden", "none", "--decoder-hidden", "none", "--latent", str(Z),
                   "--epochs", "150", "--lr", "0.01", "--device", "cpu", "--threads", "1", "--out", str(out)]
            if standardize:
                cmd.append("--standardize")
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            subprocess.run([vae, "eval", "--model", str(out), "--iw", "5000", "--device", "cpu", "--json",
                            str(out / "eval.json")], check=True, stdout=subprocess.DEVNULL)
            ev = json.loads((out / "eval.json").read_text())
            tensors, _ = safetensors_np.read_safetensors(out / "model.safetensors")
            exact = closed_form(tensors, test) / N_TEST
            name = "--standardize" if standardize else "raw"
            print(f"{name}: vae eval exact {ev['log_px_exact']:.6f}, numpy closed form {exact:.6f}, "
                  f"IWAE (K=5000) {ev['log_px_iwae']:.6f}")
            if not abs(ev["log_px_exact"] - exact) <= 1e-6 * abs(exact):
                failures.append(f"{name}: exact log p(x) {ev['log_px_exact']} != closed form {exact} (1e-6 relative)")
            if not abs(ev["log_px_iwae"] - exact) <= 0.05:
                failures.append(f"{name}: the IWAE estimate {ev['log_px_iwae']} is not within 0.05 of {exact}")
            if standardize:
                x = train.astype(np.float64)
                for key, want in (("standardize.mean", x.mean(0)), ("standardize.std", x.std(0))):
                    got = tensors.get(key)
                    if got is None or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
                        failures.append(f"{name}: the file's {key} is {got}, the training set's {want}")
            elif any(k.startswith("standardize.") for k in tensors):
                failures.append(f"{name}: an unstandardized model's file holds a scaling")
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
