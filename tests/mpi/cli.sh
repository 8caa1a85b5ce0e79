#!/usr/bin/env bash
# `mpirun -np 2 vae train` as a user runs it: against one process, resumed bit for bit,
# resumed on another number of processes, and with one rank killed (the job ends, non-zero,
# within 30 s, and the last checkpoint stays good), and with an error on one process.
# Usage: cli.sh VAE MPIRUN [DEVICE [SUM]]: DEVICE cpu (the default) or cuda; SUM how the log
# must say the gradients are summed (default: MPI_Allreduce).
set -euo pipefail
vae=$1
mpirun=$2
device=${3:-cpu}
sum=${4:-MPI_Allreduce}
mpi=("$mpirun" --allow-run-as-root --oversubscribe -np 2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Data: 600 items of 64 pixels, noisy copies of 4 prototypes (uint8 IDX), and 200 test items.
make_idx() {  # make_idx FILE N SEED
  awk -v n="$2" -v seed="$3" 'BEGIN {
    srand(seed); printf "%c%c%c%c", 0, 0, 8, 3;
    printf "%c%c%c%c", int(n / 16777216) % 256, int(n / 65536) % 256, int(n / 256) % 256, n % 256;
    printf "%c%c%c%c%c%c%c%c", 0, 0, 0, 8, 0, 0, 0, 8;
    for (i = 0; i < n; i++) for (j = 0; j < 64; j++) {
      on = ((j * 7 + (i % 4) * 13) % 5) < 2; if (rand() < 0.05) on = !on;
      printf "%c", on ? 230 : 20 } }' > "$1"
}
LC_ALL=C make_idx "$work/train.idx" 600 1
LC_ALL=C make_idx "$work/test.idx" 200 2
args=(--device "$device" --hidden 32 --latent 4 --batch 50 --train "$work/train.idx" --test "$work/test.idx")

losses() { cut -d, -f2,3 "$1/metrics.csv" | tail -n +2; }  # train and test loss per epoch

# 1. Two processes against one: the same losses to 1e-3 (float sums in another order).
"$vae" train "${args[@]}" --epochs 3 --out "$work/one" > /dev/null
"${mpi[@]}" "$vae" train "${args[@]}" --epochs 3 --out "$work/two" > "$work/two.log"
grep -q "data parallel: MPI (Open MPI.*gradients summed by $sum" "$work/two.log" ||
  fail "the log does not say it runs data parallel and how it sums: $(cat "$work/two.log")"
[[ $(grep -c "^epoch 3/3" "$work/two.log") == 1 ]] || fail "rank 0 alone reports: $(cat "$work/two.log")"
grep -q '"processes": 2' "$work/two/config.json" || fail "config.json does not record 2 processes"
paste -d, <(losses "$work/one") <(losses "$work/two") | awk -F, '{
  for (k = 1; k <= 2; k++) { a = $k; b = $(k + 2); d = a - b; if (d < 0) d = -d;
    if (d > 1e-3 * (a < 0 ? -a : a)) { print "FAIL: epoch " NR ": one process " a ", two " b; bad = 1 } } }
  END { exit bad }' || exit 1
echo "ok: two processes give one process's losses to 1e-3"

# 2. Resuming with the same two processes goes on bit for bit.
"${mpi[@]}" "$vae" train "${args[@]}" --epochs 1 --out "$work/resumed" > /dev/null
"${mpi[@]}" "$vae" train --resume "$work/resumed" --epochs 3 > /dev/null
diff <(losses "$work/two") <(losses "$work/resumed") > /dev/null ||
  fail "a resumed 2-process run differs from an uninterrupted one: $(paste -d' ' <(losses "$work/two") <(losses "$work/resumed"))"
echo "ok: a 2-process run resumed on 2 processes equals the uninterrupted run bit for bit"

# 3. Resuming on another number of processes works and says the bits will differ.
cp -r "$work/resumed" "$work/other"
"$vae" train --resume "$work/other" --epochs 4 > "$work/other.log"
grep -q "resuming a run of 2 processes on 1" "$work/other.log" || fail "no note on the change of processes: $(cat "$work/other.log")"
grep -q "^epoch 4/4" "$work/other.log" || fail "the resumed run did not train: $(cat "$work/other.log")"
echo "ok: a 2-process run resumes on 1 process and says the losses will differ"

# 4. A killed rank ends the job: non-zero, within 30 s, the last checkpoint good.
"${mpi[@]}" "$vae" train "${args[@]}" --epochs 100000 --out "$work/killed" > "$work/killed.log" 2>&1 &
job=$!
for _ in $(seq 1 600); do [[ -f "$work/killed/model.safetensors" ]] && break; sleep 0.05; done
[[ -f "$work/killed/model.safetensors" ]] || fail "no checkpoint after 30 s: $(cat "$work/killed.log")"
sleep 0.5
rank=$(pgrep -P "$job" -f "$vae" | tail -1 || true)
[[ -n "$rank" ]] || rank=$(pgrep -f "$vae train.*$work/killed" | tail -1)
[[ -n "$rank" ]] || fail "no rank process found under mpirun ($job)"
t0=$SECONDS
kill -9 "$rank"
status=0
wait "$job" || status=$?
(( SECONDS - t0 <= 30 )) || fail "the job took $((SECONDS - t0)) s to end after a rank was killed"
(( status != 0 )) || fail "the job exited 0 after a rank was killed"
grep -qiE "killed|signal 9|exited on signal" "$work/killed.log" || fail "no message about the killed rank: $(cat "$work/killed.log")"
"$vae" eval --model "$work/killed" --device cpu --iw 2 --limit 10 > /dev/null || fail "the last checkpoint does not load"
echo "ok: a killed rank ends the job (exit $status) in $((SECONDS - t0)) s; the checkpoint loads"

# 5. An error on one process ends the job too (the others would wait for it in a collective):
# non-zero within 30 s, one line naming the process, earlier output untouched.
ends() {  # ends NAME COMMAND...: the launch must fail within 30 s
  local name=$1 t0=$SECONDS status=0
  shift
  timeout 60 "$@" > "$work/$name.log" 2>&1 || status=$?
  (( status != 124 && status != 0 && SECONDS - t0 <= 30 )) ||
    fail "$name: exit $status after $((SECONDS - t0)) s: $(cat "$work/$name.log")"
}
sum_before=$(cat "$work/one"/* | cksum)
ends taken "${mpi[@]}" "$vae" train "${args[@]}" --epochs 1 --out "$work/one"  # only rank 0 looks at OUT
grep -q "vae: error: process 0 of 2: --out '$work/one' already holds files" "$work/taken.log" ||
  fail "no error line from process 0: $(cat "$work/taken.log")"
[[ $(cat "$work/one"/* | cksum) == "$sum_before" ]] || fail "the earlier run's files changed"
ends missing "$mpirun" --allow-run-as-root --oversubscribe -np 1 "$vae" train "${args[@]}" --epochs 50 --out "$work/m" : \
  -np 1 "$vae" train "${args[@]}" --epochs 50 --train "$work/missing.idx" --out "$work/m"
grep -q "vae: error: process 1 of 2: cannot open '$work/missing.idx'" "$work/missing.log" ||
  fail "no error line from process 1: $(cat "$work/missing.log")"
echo "ok: an error on one process ends the job with its line, and nothing is written over"
# The other commands are not data parallel: each process runs its own, and the first says so.
"${mpi[@]}" "$vae" eval --model "$work/one" --device cpu --limit 20 > "$work/eval.log" 2>&1 ||
  fail "vae eval under mpirun: $(cat "$work/eval.log")"
[[ $(grep -c "vae: note: vae eval is not data parallel: each of the 2 processes" "$work/eval.log") == 1 ]] ||
  fail "vae eval under mpirun: not one note: $(cat "$work/eval.log")"
echo "ok: vae eval under mpirun runs in each process and says so once"

# 6. SIGUSR1 to mpirun (which passes it on to every process) stops the run after one step for
# all, with a checkpoint; resuming on 2 processes then equals an uninterrupted run bit for bit.
"${mpi[@]}" "$vae" train "${args[@]}" --epochs 100000 --out "$work/usr1" > "$work/usr1.log" 2>&1 &
launcher=$!
for _ in $(seq 1 600); do grep -q "^epoch 1/" "$work/usr1.log" 2>/dev/null && break; sleep 0.05; done
kill -USR1 "$launcher"
status=0
wait "$launcher" || status=$?
(( status != 0 )) || fail "the stopped job exited 0"
line=$(grep "^interrupted at epoch" "$work/usr1.log") || fail "no 'interrupted' line: $(cat "$work/usr1.log")"
epoch=$(sed 's/^interrupted at epoch \([0-9]*\),.*/\1/' <<<"$line")
"${mpi[@]}" "$vae" train --resume "$work/usr1" --epochs "$epoch" > /dev/null
"${mpi[@]}" "$vae" train "${args[@]}" --epochs "$epoch" --out "$work/whole" > /dev/null
diff <(losses "$work/whole") <(losses "$work/usr1") > /dev/null ||
  fail "stopped by SIGUSR1 at epoch $epoch and resumed: not the uninterrupted run's losses"
echo "ok: SIGUSR1 to mpirun stops every process with a checkpoint ($line); resumed, the run is bit for bit"
# SIGTERM to one process only (a scheduler's, say): the other stops by the vote, after the same
# step; each exits 128 + a stop signal (143 for SIGTERM, 130 for the one that got none).
"${mpi[@]}" "$vae" train "${args[@]}" --epochs 100000 --out "$work/term" > "$work/term.log" 2>&1 &
launcher=$!
for _ in $(seq 1 600); do grep -q "^epoch 1/" "$work/term.log" 2>/dev/null && break; sleep 0.05; done
rank=$(pgrep -f "$vae train.*$work/term" | tail -1)
[[ -n "$rank" ]] || fail "no rank process found"
kill -TERM "$rank"
status=0
wait "$launcher" || status=$?
grep -q "^interrupted at epoch" "$work/term.log" || fail "SIGTERM to one rank: no 'interrupted' line: $(cat "$work/term.log")"
(( status == 143 || status == 130 )) || fail "SIGTERM to one rank: exit $status: $(cat "$work/term.log")"
echo "ok: SIGTERM to one process stops both after the same step (exit $status)"
