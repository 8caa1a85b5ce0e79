#!/usr/bin/env python3
"""fit()'s overhead over `vae train`: the same model, options and data, trained by the
package's own `vae` command and by vae.VAE.fit in turn, several rounds (the order
alternating), on the reference model by default. Each side's time is its epochs' `seconds`
(the training steps, as metrics.csv counts them: no data loading, evaluation or pictures);
the overhead is the median over rounds of python / cli - 1. Run it with the package
installed (tests/python/run.sh makes such a venv):

    VENV/bin/python bench/python_overhead.py --rounds 5 --set threads=1 --json bench/results/python-overhead.json

--set KEY=VALUE sets an option of the model or the training (vae.options() lists them) on both
sides; the default is the reference model for 2 epochs on the CPU.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import vae

FASHION = "/usr/share/datasets/fashion-mnist/"


FLAG = {o["key"]: o["flag"] for o in vae._core.options()}  # the table's flags, as vae train takes them


def cli_seconds(options, train, test, out):
    command = [os.path.join(sys.prefix, "bin", "vae"), "train", FLAG["train"], train, FLAG["test"], test,
               FLAG["out"], out, FLAG["overwrite"]]
    for key, value in options.items():
        command += [FLAG[key], ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    subprocess.run(command, check=True, capture_output=True)
    with open(os.path.join(out, "metrics.csv")) as f:
        rows = [line.split(",") for line in f.read().splitlines()[1:]]
    return [float(r[5]) for r in rows], [float(r[1]) for r in rows]


def python_seconds(options, x, xt):
    history = vae.VAE(**options).fit(x, test=xt, progress=False)
    return [h["seconds"] for h in history], [h["train_loss"] for h in history]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an option for both sides")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    train, test = FASHION + "train-images-idx3-ubyte.gz", FASHION + "t10k-images-idx3-ubyte.gz"
    x, xt = vae.read(train), vae.read(test)
    options = dict(epochs=2, device="cpu", seed=1)  # the reference model otherwise
    kinds = {o["key"]: o["kind"] for o in vae.options()}
    for item in a.set:
        key, _, value = item.partition("=")
        if key not in kinds:
            p.error("--set %s: no such option (vae.options() lists them)" % key)
        options[key] = int(value) if kinds[key] == "int" else float(value) if kinds[key] == "float" else value
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            sides = ["cli", "python"] if r % 2 == 0 else ["python", "cli"]
            got = {}
            for side in sides:
                got[side] = (cli_seconds(options, train, test, os.path.join(tmp, "run")) if side == "cli"
                             else python_seconds(options, x, xt))
            same = ["%.6f" % v for v in got["python"][1]] == ["%.6f" % v for v in got["cli"][1]]
            assert same, "the two sides' losses differ: %s" % got
            cli, py = sum(got["cli"][0]), sum(got["python"][0])
            rounds.append({"cli_seconds": cli, "python_seconds": py, "ratio": py / cli})
            print("round %d: cli %.3f s, python %.3f s, python/cli %.4f" % (r + 1, cli, py, py / cli), flush=True)
    ratios = [r["ratio"] for r in rounds]
    median = statistics.median(ratios)
    print("fit overhead over vae train: %+.2f%% (median of %d rounds; range %+.2f%% .. %+.2f%%)"
          % (100 * (median - 1), len(ratios), 100 * (min(ratios) - 1), 100 * (max(ratios) - 1)))
    if a.json:
        commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        with open(a.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit, "options": options,
                       "device": vae.VAE(input_dim=784, **options).device, "rounds": rounds,
                       "median_ratio": median}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
