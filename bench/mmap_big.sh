#!/usr/bin/env bash
# Data larger than memory: one epoch of `vae train --mmap` (CPU path, reference model) on a
# generated uint8 NPY larger than 72% of this machine's memory, its peak resident memory
# (GNU time's maximum RSS) and samples/s, against the same training on a smaller file read
# into memory and the small file mapped. The rows are Fashion-MNIST's training images over and
# over (real pixels; 784 per row), the test set Fashion-MNIST's.
# Writes OUT.json. Needs free disk for the file (it is deleted at the end unless KEEP=1).
#
# Usage: bench/mmap_big.sh VAE OUT.json [WORK]   (WORK: where the files go, default /tmp/vae-mmap)
#   env FRACTION (0.72: the big file's size over MemTotal), SMALL_ROWS (600000)
set -euo pipefail
vae=$(realpath "$1")
out=$2
work=${3:-/tmp/vae-mmap}
fraction=${FRACTION:-0.72}
small_rows=${SMALL_ROWS:-600000}
python=/usr/bin/python3
command="$0 $*"
commit=$(git -C "$(dirname "$vae")" describe --always --dirty 2>/dev/null || echo unknown)  # the binary's tree, now
fashion=/usr/share/datasets/fashion-mnist
mkdir -p "$work"
big="$work/big.npy"
small="$work/small.npy"
cleanup() { if [[ ${KEEP:-0} != 1 ]]; then rm -f "$big" "$small"; fi; }
trap cleanup EXIT

mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
big_rows=$("$python" -c "import math; print(math.ceil($fraction * $mem_kib * 1024 / 784))")

# write_npy PATH ROWS: a (ROWS, 784) uint8 NPY of Fashion-MNIST's training images, tiled.
write_npy() {
  "$python" - "$1" "$2" "$fashion/train-images-idx3-ubyte.gz" <<'EOF'
import gzip, sys
import numpy as np
path, rows, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with gzip.open(src, "rb") as f:
    images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 784)
header = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, 784), }" % rows
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
with open(path, "wb") as out:
    out.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    left = rows
    while left:
        n = min(left, len(images))
        out.write(images[:n].tobytes())
        left -= n
EOF
}

echo "writing $big: $big_rows rows ($(( big_rows * 784 / 1048576 )) MiB; memory $(( mem_kib / 1024 )) MiB)" >&2
write_npy "$big" "$big_rows"
write_npy "$small" "$small_rows"

# train NAME DATA [FLAGS...]: one epoch; prints "peak_rss_kib samples_per_sec wall_s"
train() {
  local name=$1 data=$2
  shift 2
  local dir="$work/run-$name"
  rm -rf "$dir"
  /usr/bin/time -f "%M %e" -o "$work/$name.time" "$vae" train --device cpu --epochs 1 --train "$data" \
    --test "$fashion/t10k-images-idx3-ubyte.gz" --out "$dir" "$@" >"$work/$name.log" 2>&1 ||
    { echo "$name failed: $(tail -1 "$work/$name.log")" >&2; exit 1; }
  local rate
  rate=$(tail -1 "$dir/metrics.csv" | cut -d, -f7)
  echo "$(cat "$work/$name.time") $rate"
}

echo "one epoch, the small file read into memory" >&2
small_read=$(train small-read "$small")
echo "  $small_read (peak RSS KiB, wall s, samples/s)" >&2
echo "one epoch, the small file mapped" >&2
small_mapped=$(train small-mapped "$small" --mmap)
echo "  $small_mapped" >&2
echo "one epoch, the big file mapped" >&2
big_mapped=$(train big-mapped "$big" --mmap)
echo "  $big_mapped" >&2

"$python" - "$out" "$commit" "$mem_kib" "$big_rows" "$small_rows" "$small_read" "$small_mapped" "$big_mapped" "$command" <<'EOF'
import json, os, sys
out, commit, mem_kib, big_rows, small_rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def run(text):
    rss, wall, rate = text.split()
    return {"peak_rss_mib": round(int(rss) / 1024, 1), "wall_s": float(wall), "samples_per_sec": float(rate)}
r = {"small_read": run(sys.argv[6]), "small_mapped": run(sys.argv[7]), "big_mapped": run(sys.argv[8])}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
doc = {"what": "one epoch of vae train --device cpu (reference model, batch 128) on uint8 NPY files of "
               "Fashion-MNIST's images tiled; peak RSS from GNU time",
       "command": sys.argv[9], "vae": commit, "cpu": cpu, "cores": os.cpu_count(),
       "mem_total_mib": mem_kib // 1024, "big_rows": big_rows, "big_file_mib": big_rows * 784 // 2**20,
       "big_over_memory": round(big_rows * 784 / (mem_kib * 1024), 3), "small_rows": small_rows, "runs": r,
       "big_rate_over_in_memory": round(r["big_mapped"]["samples_per_sec"] / r["small_read"]["samples_per_sec"], 3),
       "big_peak_rss_within_2_gib": r["big_mapped"]["peak_rss_mib"] <= 2048}
json.dump(doc, open(out, "w"), indent=1)
for k, v in r.items():
    print(f"{k:14} peak RSS {v['peak_rss_mib']:8.1f} MiB  {v['samples_per_sec']:9.0f} samples/s  {v['wall_s']:7.1f} s")
print(f"big file: {doc['big_file_mib']} MiB = {doc['big_over_memory']:.2f} x memory; "
      f"rate over in-memory {doc['big_rate_over_in_memory']:.3f}")
print("wrote", out)
EOF
