#!/usr/bin/env bash
# The CPU path on a shared machine: epoch times on Fashion-MNIST (reference model) on a quiet
# machine and beside one busy process (a shell busy loop), for `vae train` at its defaults
# (all cores, the load governor), `vae train` at a fixed thread count (no governor),
# optionally an older `vae` (OLD_VAE) at its defaults, and PyTorch (bench/torch_reference.py)
# at each thread count in TORCH_THREADS. Quiet and busy runs alternate round by round.
# Writes OUT.json: every run's mean epoch time (the epochs after the first), and per contender
# the medians and the busy/quiet ratio.
#
# Usage: bench/shared_machine.sh VAE OUT.json [ROUNDS] [EPOCHS]
#   env PYTHON (default /usr/bin/python3: PyTorch for the comparison), TORCH_THREADS ("1 2"),
#   OLD_VAE (another build's vae, to see how far the quiet time moved), WORK (/tmp/vae-shared).
# Run it on an otherwise quiet machine.
set -euo pipefail
vae=$(realpath "$1")
out=$2
rounds=${3:-3}
epochs=${4:-3}
python=${PYTHON:-/usr/bin/python3}
torch_threads=${TORCH_THREADS:-1 2}
work=${WORK:-/tmp/vae-shared}
here=$(cd "$(dirname "$0")" && pwd)
cores=$(nproc)
command="$0 $*"
# the commits of the git trees that hold the binaries (their build folders' repositories), now
commit_of() { git -C "$(dirname "$1")" describe --always --dirty 2>/dev/null || echo unknown; }
vae_commit=$(commit_of "$vae")
old_commit=
if [[ -n ${OLD_VAE:-} ]]; then old_commit=$(commit_of "$OLD_VAE"); fi
rm -rf "$work"
mkdir -p "$work"
runs="$work/runs.jsonl"
: >"$runs"

busy_pid=
stop_busy() { if [[ -n $busy_pid ]]; then kill "$busy_pid" 2>/dev/null || true; wait "$busy_pid" 2>/dev/null || true; busy_pid=; fi; }
trap stop_busy EXIT

# record NAME LOAD ROUND SECONDS...: one run's epoch times, the first left out of the mean.
record() {
  local name=$1 load=$2 round=$3
  shift 3
  "$python" - "$name" "$load" "$round" "$@" >>"$runs" <<'EOF'
import json, sys
name, load, rnd, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), [float(s) for s in sys.argv[4:]]
rest = secs[1:] if len(secs) > 1 else secs
print(json.dumps({"contender": name, "load": load, "round": rnd, "epoch_seconds": secs,
                  "mean_s": sum(rest) / len(rest)}))
EOF
  echo "  $name ($load): $* s per epoch" >&2
}

# vae_run NAME BINARY LOAD ROUND [FLAGS...]
vae_run() {
  local name=$1 bin=$2 load=$3 round=$4
  shift 4
  local dir="$work/$name-$load-$round"
  "$bin" train --device cpu --epochs "$epochs" --out "$dir" "$@" >"$dir.log" 2>&1 ||
    { echo "$name failed: $(tail -1 "$dir.log")" >&2; exit 1; }
  # shellcheck disable=SC2046
  record "$name" "$load" "$round" $(tail -n +2 "$dir/metrics.csv" | cut -d, -f6)
}

torch_run() {
  local threads=$1 load=$2 round=$3
  local json="$work/torch$threads-$load-$round.json"
  "$vae" train --device cpu --epochs "$epochs" --threads "$threads" --print-config |
    "$python" "$here/torch_reference.py" --config - --json "$json" >"$json.log" 2>&1 ||
    { echo "torch failed: $(tail -1 "$json.log")" >&2; exit 1; }
  # shellcheck disable=SC2046
  record "torch-$threads" "$load" "$round" $("$python" -c 'import json,sys; print(*[e["seconds"] for e in json.load(open(sys.argv[1]))["epochs"]])' "$json")
}

torch_version=$("$python" -c 'import torch; print(torch.__version__)')
for r in $(seq 1 "$rounds"); do
  for load in quiet busy; do
    if [[ $load == busy ]]; then
      bash -c 'while :; do :; done' &
      busy_pid=$!
      sleep 1
    fi
    echo "round $r, $load" >&2
    vae_run vae "$vae" "$load" "$r"
    vae_run "vae-threads$cores" "$vae" "$load" "$r" --threads "$cores"
    if [[ -n ${OLD_VAE:-} ]]; then vae_run vae-old "$OLD_VAE" "$load" "$r"; fi
    for t in $torch_threads; do torch_run "$t" "$load" "$r"; done
    stop_busy
    sleep 2
  done
done

"$python" - "$runs" "$out" "$vae_commit" "$torch_version" "$rounds" "$epochs" "$old_commit" "$command" <<'EOF'
import json, os, platform, statistics, sys
runs_path, out, vae_commit, torch_version, rounds, epochs, old_commit, command = sys.argv[1:9]
runs = [json.loads(l) for l in open(runs_path)]
summary = {}
for name in dict.fromkeys(r["contender"] for r in runs):
    q = statistics.median(r["mean_s"] for r in runs if r["contender"] == name and r["load"] == "quiet")
    b = statistics.median(r["mean_s"] for r in runs if r["contender"] == name and r["load"] == "busy")
    summary[name] = {"quiet_s": round(q, 4), "busy_s": round(b, 4), "busy_over_quiet": round(b / q, 3)}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
doc = {"what": "epoch seconds (mean of the epochs after the first; median of the rounds), Fashion-MNIST, "
               "reference model 784-400-20, batch 128; busy = one shell busy loop beside it",
       "cpu": cpu, "cores": os.cpu_count(), "vae": vae_commit, "vae_old": old_commit or None,
       "torch": torch_version, "rounds": int(rounds), "epochs": int(epochs),
       "command": command, "summary": summary, "runs": runs}
if old_commit and "vae" in summary and "vae-old" in summary:
    doc["quiet_new_over_old"] = round(summary["vae"]["quiet_s"] / summary["vae-old"]["quiet_s"], 3)
json.dump(doc, open(out, "w"), indent=1)
print(f"{'contender':16} {'quiet s':>8} {'busy s':>8} {'busy/quiet':>10}")
for name, s in summary.items():
    print(f"{name:16} {s['quiet_s']:8.3f} {s['busy_s']:8.3f} {s['busy_over_quiet']:10.2f}")
if "quiet_new_over_old" in doc:
    print(f"quiet time, this vae over the old one: {doc['quiet_new_over_old']:.3f}")
print("wrote", out)
EOF
