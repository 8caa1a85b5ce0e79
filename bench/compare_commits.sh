#!/usr/bin/env bash
# Is a change slower? Builds `vae` at two commits (CPU only, Release, in git worktrees under
# WORK) and times `vae bench --impl cpu` at batch 128 for each likelihood, the two binaries
# alternating round by round on the same machine, so drift and noise fall on both sides.
# Writes WORK/compare.json: per likelihood the ms per step of every round and the median of
# the per-round ratios new / old.
# Usage: bench/compare_commits.sh OLD NEW [ROUNDS] [WORK]   (e.g. 1501df9 HEAD 5 /tmp/compare)
# Run it on a quiet machine: nothing else busy, no build running.
set -euo pipefail
old=$1
new=$2
rounds=${3:-5}
work=${4:-/tmp/vae-compare}
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
mkdir -p "$work"
for side in old new; do
  commit=${!side}
  dir="$work/$side"
  if [[ ! -d $dir ]]; then git -C "$repo" worktree add -q --detach "$dir" "$commit"; fi
  git -C "$dir" checkout -q --detach "$(git -C "$repo" rev-parse "$commit")"
  cmake -S "$dir" -B "$dir/b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVAE_CUDA=OFF -DVAE_BUILD_TESTS=OFF >/dev/null
  cmake --build "$dir/b" --target vae_cli >/dev/null
done
cases=("bernoulli:" "gaussian:--learn-sigma" "poisson:--log1p-input")
for r in $(seq 1 "$rounds"); do
  for c in "${cases[@]}"; do
    lik=${c%%:*}
    extra=${c#*:}
    for side in old new; do
      # shellcheck disable=SC2086
      "$work/$side/b/vae" bench --impl cpu --batch 128 --epochs 0 --steps 300 --repeats 10 --likelihood "$lik" $extra \
        --json "$work/$side-$lik-$r.json" >/dev/null
    done
  done
done
python3 - "$work" "$rounds" "$old" "$new" <<'EOF'
import json, statistics, sys
work, rounds, old, new = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {"old": old, "new": new, "rounds": rounds, "command": "vae bench --impl cpu --batch 128 --epochs 0 --steps 300 --repeats 10",
       "likelihoods": {}}
for lik in ("bernoulli", "gaussian", "poisson"):
    runs = {s: [json.load(open(f"{work}/{s}-{lik}-{r}.json")) for r in range(1, rounds + 1)] for s in ("old", "new")}
    ms = {s: [j["results"][0]["ms_per_step_median"] for j in runs[s]] for s in runs}
    ratios = [n / o for n, o in zip(ms["new"], ms["old"])]
    out["likelihoods"][lik] = {"ms_old": ms["old"], "ms_new": ms["new"], "ratio_new_over_old_median": statistics.median(ratios),
                               "ratios": ratios, "commit_old": runs["old"][0]["commit"], "commit_new": runs["new"][0]["commit"],
                               "device": runs["new"][0]["results"][0]["device"], "cpu": runs["new"][0]["cpu"]}
    print(f"{lik:10s} new/old median {statistics.median(ratios):.3f}  rounds {', '.join(f'{x:.3f}' for x in ratios)}")
json.dump(out, open(f"{work}/compare.json", "w"), indent=2)
print(f"wrote {work}/compare.json")
EOF
