#!/usr/bin/env bash
# The GPU proof: one prepared command on a GPU machine (H100/H200, sm_90) that ends well inside
# the device tool's 10 minutes, from what bench/gpu_prep.sh gathered on the CPU machine.
#
#   here, first:        bash bench/gpu_prep.sh                  # fills .gpu-proof/
#   on the GPU machine: bash bench/gpu_proof.sh "$OUT"          # device tool: carry [".gpu-proof"], timeout_s 600
#   here and in CI:     bash bench/gpu_proof.sh --dry-run [DIR] # the checks and the packaging, GPU stages skipped
#
# Stages, under one deadline (VAE_PROOF_DEADLINE_S, default 510 s from the start; each stage
# stops itself at its own cap or at the deadline, whichever comes first):
#   1. load: unpack the carried binaries and their Debian libraries; ldd and `vae --help` must
#      work. If they do not, build there from the carried -dev packages (zlib's absolute
#      libz.so link made to point into the carried tree, so CMake does not fall back to the
#      non-PIC libz.a).
#   2. tests: nvidia-smi, then the GPU test binary run directly (ctest's files hold the build
#      machine's paths), sharded across processes with GoogleTest's sharding; NCCL (for the
#      test of one data-parallel rank through it) from wherever find_lib finds libnccl.so.2.
#   3. sanitizers: compute-sanitizer memcheck on a few backend tests; racecheck and synccheck on
#      the kernel tests (KernelMatchesItsCpuTwin.*), cuBLAS's kernels excluded. Stages 2 and 3
#      run side by side: neither is timed.
#   4. train: `vae train --device cuda`, 10 epochs, batch 128 resident, batch 128 streamed and
#      batch 4096: per-epoch ms, and the test -ELBO against the carried CPU-path run.
#   4b. mpi: data parallel under the carried Open MPI's mpirun (relocated with OPAL_PREFIX):
#      the data-parallel GPU suite (tests/cuda/test_mpi_backend.cpp) on 2 ranks, then
#      `mpirun -np 2 vae train --device cuda`, 2 epochs, against stage 4's one process. The
#      dry run launches `vae train --device cpu` there instead (the suite skips without a GPU).
#   5. bench: `vae bench --impl cuda,torch,torch-compile` at batch 128 and at 4096, with the
#      machine's python3 (PyTorch) and this tree's bench/torch_reference.py.
#   6. kernels: bench/gpu_kernels, if time remains.
#
# After every stage it rewrites four files in the results folder (the device tool brings back
# at most 8), so a run cut off still leaves results:
#   proof.md                          the summary in words
#   gpu-<UTC date>-<commit>.json      the machine-readable summary (null: not measured)
#   gpu-<UTC date>-<commit>.log       this script's log
#   gpu-<UTC date>-<commit>.tar.gz    every stage's output, metrics, JSON
# Exit status: 0 when every stage passed (a dry run: when the carried folder and the scripts'
# commands check out), 1 otherwise. The targets are reported met or missed, not in the status.
set -uo pipefail  # not -e: a failed stage is recorded and the next one still runs
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
T0=$SECONDS

DRY=0
if [[ ${1:-} == --dry-run ]]; then
  DRY=1
  shift
fi
RESULTS=${1:-}
if [[ -z $RESULTS ]]; then
  ((DRY)) || { echo "usage: bash bench/gpu_proof.sh RESULTS_DIR   (on the device: \$OUT) | --dry-run [RESULTS_DIR]" >&2; exit 2; }
  RESULTS=$ROOT/build-gpu-proof/dry-run
fi
# The default dry-run folder is this script's own: clear it, so that it holds one run.
[[ $RESULTS == "$ROOT/build-gpu-proof/dry-run" ]] && rm -rf "$RESULTS"
mkdir -p "$RESULTS" || { echo "gpu_proof: cannot create $RESULTS" >&2; exit 2; }
RESULTS=$(cd "$RESULTS" && pwd)
CARRY=${VAE_PROOF_DIR:-$ROOT/.gpu-proof}
DEADLINE_S=${VAE_PROOF_DEADLINE_S:-510}
RESERVE=15        # seconds kept for the last rewrite of the results
MIN_STAGE=20      # a stage that would get less than this is skipped
LIMIT=$((60 * 1024 * 1024))
export PATH="$PATH:/usr/local/cuda/bin"
export PYTHONUNBUFFERED=1

# The tests the sanitizers run. memcheck: a few backend tests that between them run every
# pass (one step of each model kind, graphs, streaming, evaluation, the estimate, gradients,
# pictures, the cuBLASLt epilogue); racecheck and synccheck: every kernel case.
MEMCHECK_TESTS=(CudaBackend.OneStepMatchesTheCpu CudaBackend.StreamedAndResidentDataAreBitIdentical
  CudaBackend.GraphReplaysEqualDirectLaunches CudaBackend.EvaluateMatchesTheCpu CudaBackend.ANonFiniteStepIsDroppedAsOnTheCpu
  CudaInference.OneStepOfEveryOptimizerMatchesTheCpu CudaInference.IwaeOneStepMatchesTheCpu
  CudaInference.ScoreEstimatorOneStepMatchesTheCpu CudaInference.EstimateLogLikelihoodMatchesTheCpu
  CudaInference.ComputeGradientMatchesTheCpu CudaInference.PictureMeansMatchTheCpu
  CudaInference.LtEpilogueOptionRunsWithOddShapesAndUnalignedWeights)
KERNEL_TESTS='KernelMatchesItsCpuTwin.*'
# cuBLAS's and cuBLASLt's kernels (gemm, gemv, cutlass, xmma, split-K reductions) are not ours
# to race-check, and they are most of the sanitizers' time; none of our kernels has such a name.
CUBLAS_KERNELS='gemm|gemv|cutlass|xmma|splitK|cublas'
# The options the stages pass; the dry run checks that the binaries still take them.
TRAIN_OPTS=(--device --train --test --epochs --seed --batch --stream-data --out)
BENCH_OPTS=(--impl --models --batch --epochs --steps --repeats --python --torch-script --train --test --json)
KERNEL_OPTS=(--json)

# What the GPU machine is expected to have, so the prep does not carry it (bench/gpu_prep.sh
# keeps the same two lists).
BASE_RE='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libvae)\.so'
CUDA_RE='^(libcuda|libcudart|libcublas|libcublasLt|libcurand|libnvrtc|libnvJitLink)\.so'

TRAIN_DATA=(--train "$CARRY/data/train-images-idx3-ubyte.gz" --test "$CARRY/data/t10k-images-idx3-ubyte.gz")
manifest() { sed -n "s/^$1=//p" "$CARRY/MANIFEST" 2>/dev/null | head -1; }
COMMIT=$(manifest commit)
TREE_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || true)
[[ -n $COMMIT ]] || COMMIT=${TREE_COMMIT:-unknown}
STAMP=$(date -u +%Y%m%d-%H%M%S)
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
BASE=gpu-$STAMP-$COMMIT
LOG=$RESULTS/$BASE.log
WORK=$(mktemp -d /tmp/vae-proof.XXXXXX)
RES=$WORK/results  # what the tarball holds
PREFIX=$WORK/root  # the carried Debian packages, unpacked (never into /)
mkdir -p "$RES" "$PREFIX"
trap 'rm -rf "$WORK"' EXIT
: >"$LOG"

log() { echo "[$((SECONDS - T0)) s] $*" | tee -a "$LOG"; }
left() { echo $((T0 + DEADLINE_S - RESERVE - SECONDS)); }
cap() { local l; l=$(left); echo $(($1 < l ? $1 : l)); }  # cap WANT: WANT, or what the deadline leaves
num() { [[ ${1:-} =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] && echo "$1" || echo null; }
jstr() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; [[ -n $1 ]] && echo "\"$s\"" || echo null; }
has() { command -v "$1" >/dev/null 2>&1; }

# Stage records: status is passed, failed, timed out or "skipped (why)".
STAGES=(load tests sanitizers train mpi bench kernels)
declare -A TITLE=([load]="1. load the carried binaries" [tests]="2. GPU tests" [sanitizers]="3. compute-sanitizer"
  [train]="4. 10-epoch training runs" [mpi]="4b. data parallel under mpirun" [bench]="5. vae bench against PyTorch"
  [kernels]="6. gpu_kernels")
declare -A ST DT SECS
for s in "${STAGES[@]}"; do ST[$s]="not reached"; DT[$s]=""; SECS[$s]=""; done
stage() { ST[$1]=$2; DT[$1]=$3; SECS[$1]=${4:-}; log "stage $1: $2${3:+: $3}"; }
# The summary's numbers; empty means not measured (null in the JSON).
declare -A V
NOTES=()  # lines for proof.md's details section
note() { NOTES+=("$*"); }

# ---- the results, rewritten after every stage ---------------------------------------------
target() {  # target VALUE OP LIMIT: met / missed / not measured
  [[ -z $1 ]] && { echo "not measured"; return; }
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == "<=") ? (v + 0 <= l + 0) : (v + 0 >= l + 0); print ok ? "**met**" : "missed" }'
}
write_md() {
  local f=$RESULTS/proof.md.tmp s d
  {
    echo "# GPU proof, $START_DATE"
    echo
    ((DRY)) && echo "**Dry run** on $(hostname): the carried folder and the commands checked, every GPU stage skipped." && echo
    echo "| | |"
    echo "| --- | --- |"
    echo "| commit | $COMMIT (carried build)${TREE_COMMIT:+; the tree here: $TREE_COMMIT} |"
    echo "| device | ${V[device]:-none seen}${V[gpu_mem]:+ (${V[gpu_mem]:-})} |"
    echo "| driver | ${V[driver]:-?} |"
    echo "| host | $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
    echo "| carried | ${V[carried]:-?} |"
    echo "| time | $((SECONDS - T0)) s of the ${DEADLINE_S} s deadline |"
    echo
    echo "## Stages"
    echo
    echo "| stage | status | s | detail |"
    echo "| --- | --- | ---: | --- |"
    for s in "${STAGES[@]}"; do
      d=${DT[$s]//|/\\|}
      echo "| ${TITLE[$s]} | ${ST[$s]} | ${SECS[$s]} | ${d//$'\n'/ } |"
    done
    echo
    echo "## Numbers against the targets"
    echo
    echo "| what | measured | target | |"
    echo "| --- | --- | --- | --- |"
    echo "| 60,000-item epoch at batch 128 (vae train, median of epochs 2-10) | ${V[epoch_ms_b128]:+${V[epoch_ms_b128]:-} ms} | <= 25 ms | $(target "${V[epoch_ms_b128]:-}" '<=' 25) |"
    echo "| test -ELBO after 10 epochs, GPU - CPU (batch 128) | ${V[elbo_diff]:+${V[elbo_gpu]:-} - ${V[elbo_cpu]:-} = ${V[elbo_diff]:-}} | within 0.5 nats | $(target "${V[elbo_absdiff]:-}" '<=' 0.5) |"
    echo "| batch 4096: the step's GEMM rate / cuBLAS SGEMM | ${V[sgemm_fraction_b4096]:-} | >= 0.5 | $(target "${V[sgemm_fraction_b4096]:-}" '>=' 0.5) |"
    echo "| batch 128: PyTorch eager's epoch / vae-cuda's (vae bench) | ${V[vs_eager]:+${V[vs_eager]:-}x} | >= 10x | $(target "${V[vs_eager]:-}" '>=' 10) |"
    echo "| batch 128: torch.compile's epoch / vae-cuda's (vae bench) | ${V[vs_compile]:+${V[vs_compile]:-}x} | >= 3x | $(target "${V[vs_compile]:-}" '>=' 3) |"
    echo
    echo "Tests: ${V[tests_passed]:-?} passed, ${V[tests_failed]:-?} failed, ${V[tests_skipped]:-?} skipped of ${V[tests_listed]:-?}." \
      "Data-parallel suite under mpirun -np 2: ${V[mpi_passed]:-?} passed, ${V[mpi_failed]:-?} failed, ${V[mpi_skipped]:-?} skipped." \
      "Sanitizer errors: memcheck ${V[memcheck]:-not measured}, racecheck ${V[racecheck]:-not measured}, synccheck ${V[synccheck]:-not measured}." \
      "Epoch at batch 4096: ${V[epoch_ms_b4096]:+${V[epoch_ms_b4096]} ms}${V[epoch_ms_b4096]:-not measured}; batch 128 streamed: ${V[epoch_ms_b128s]:+${V[epoch_ms_b128s]} ms}${V[epoch_ms_b128s]:-not measured}."
    if ((${#NOTES[@]})); then
      echo
      echo "## Details"
      echo
      printf '%s\n' "${NOTES[@]}"
    fi
  } >"$f" && mv "$f" "$RESULTS/proof.md"
}
write_json() {
  local f=$RESULTS/$BASE.json.tmp s first=1
  {
    echo "{"
    echo "  \"device\": $(jstr "${V[device]:-}"),"
    echo "  \"driver\": $(jstr "${V[driver]:-}"),"
    echo "  \"commit\": $(jstr "$COMMIT"),"
    echo "  \"date\": $(jstr "$STAMP"),"
    echo "  \"dry_run\": $( ((DRY)) && echo true || echo false),"
    echo "  \"tests_passed\": $(num "${V[tests_passed]:-}"),"
    echo "  \"tests_failed\": $(num "${V[tests_failed]:-}"),"
    echo "  \"tests_skipped\": $(num "${V[tests_skipped]:-}"),"
    echo "  \"memcheck_errors\": $(num "${V[memcheck]:-}"),"
    echo "  \"racecheck_errors\": $(num "${V[racecheck]:-}"),"
    echo "  \"synccheck_errors\": $(num "${V[synccheck]:-}"),"
    echo "  \"epoch_ms_b128\": $(num "${V[epoch_ms_b128]:-}"),"
    echo "  \"epoch_ms_b128_streamed\": $(num "${V[epoch_ms_b128s]:-}"),"
    echo "  \"epoch_ms_b4096\": $(num "${V[epoch_ms_b4096]:-}"),"
    echo "  \"test_elbo_gpu_b128\": $(num "${V[elbo_gpu]:-}"),"
    echo "  \"test_elbo_cpu_b128\": $(num "${V[elbo_cpu]:-}"),"
    echo "  \"elbo_diff_vs_cpu\": $(num "${V[elbo_diff]:-}"),"
    echo "  \"sgemm_fraction_b4096\": $(num "${V[sgemm_fraction_b4096]:-}"),"
    echo "  \"vs_torch_eager_b128\": $(num "${V[vs_eager]:-}"),"
    echo "  \"vs_torch_compile_b128\": $(num "${V[vs_compile]:-}"),"
    echo "  \"vs_torch_eager_b128_per_step\": $(num "${V[vs_eager_step]:-}"),"
    echo "  \"vs_torch_compile_b128_per_step\": $(num "${V[vs_compile_step]:-}"),"
    echo "  \"mpi_tests_passed\": $(num "${V[mpi_passed]:-}"),"
    echo "  \"mpi_tests_failed\": $(num "${V[mpi_failed]:-}"),"
    echo "  \"mpi_tests_skipped\": $(num "${V[mpi_skipped]:-}"),"
    echo "  \"mpi_gradient_sum\": $(jstr "${V[mpi_sum]:-}"),"
    echo "  \"mpi_test_elbo_np2\": $(num "${V[mpi_elbo2]:-}"),"
    echo "  \"mpi_test_elbo_np1\": $(num "${V[mpi_elbo1]:-}"),"
    echo -n "  \"stages\": {"
    for s in "${STAGES[@]}"; do
      ((first)) || echo -n ", "
      first=0
      echo -n "\"$s\": $(jstr "${ST[$s]}")"
    done
    echo "},"
    echo "  \"seconds\": $((SECONDS - T0))"
    echo "}"
  } >"$f" && mv "$f" "$RESULTS/$BASE.json"
}
publish() {
  write_md
  write_json
  cp "$LOG" "$RES/proof.log" 2>/dev/null
  tar -C "$WORK" -czf "$RESULTS/$BASE.tar.gz.tmp" results && mv "$RESULTS/$BASE.tar.gz.tmp" "$RESULTS/$BASE.tar.gz"
}

# ---- 1. load ------------------------------------------------------------------------------
unpack_deb() {  # unpack_deb DEB DEST: with dpkg-deb, or else Python (a .deb is an ar archive)
  if has dpkg-deb; then
    dpkg-deb -x "$1" "$2"
  else
    python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
with open(sys.argv[1], "rb") as f:
    data = f.read()
assert data[:8] == b"!<arch>\n", "not an ar archive"
pos = 8
while pos + 60 <= len(data):
    name, size = data[pos:pos + 16].decode().strip().rstrip("/"), int(data[pos + 48:pos + 58])
    body = data[pos + 60:pos + 60 + size]
    if name.startswith("data.tar"):
        # the packages' own links, absolute ones too (fix_links below deals with those)
        trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
        tarfile.open(fileobj=io.BytesIO(body)).extractall(sys.argv[2], **trusted)
        break
    pos += 60 + size + (size & 1)
else:
    sys.exit("no data.tar in " + sys.argv[1])
PY
  fi
}
find_lib() {  # find_lib NAME: a folder holding it (CUDA's libraries: toolkit, then PyTorch's wheels)
  local d p
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [[ -e $d/$1 ]] && { echo "$d"; return 0; }
  done
  for p in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
    d=$(find "$p/nvidia" -maxdepth 4 -name "$1" -print -quit 2>/dev/null)
    [[ -n $d ]] && { dirname "$d"; return 0; }
  done
  d=$(timeout 30 find /usr /opt -xdev -name "$1" -print -quit 2>/dev/null)
  [[ -n $d ]] && { dirname "$d"; return 0; }
  return 1
}
check_help() {  # check_help WHAT HELP_TEXT OPTION...: every option still in the help text
  local what=$1 text=$2 o miss=()
  shift 2
  for o in "$@"; do grep -q -- "$o\b" <<<"$text" || miss+=("$o"); done
  ((${#miss[@]} == 0)) || { echo "$what no longer takes ${miss[*]}"; return 1; }
}
# check_binaries DIR: ldd finds every library, the binaries start, and the tests and options
# the stages name exist. Sets WHY when not. (Called directly, not in $(...): it sets
# LD_LIBRARY_PATH and the number of tests.)
WHY=""
fail_why() { WHY=$*; return 1; }
check_binaries() {
  local d=$1 out lib name path missing=() outside=() t
  local files=("$d/bin/vae" "$d/bin/vae_cuda_tests" "$d/bin/gpu_kernels" "$d/lib/libvae.so.0")
  for t in "${files[@]}"; do [[ -f $t ]] || { fail_why "$t is missing"; return 1; }; done
  [[ -f $d/bin/vae_cuda_mpi_tests ]] && files+=("$d/bin/vae_cuda_mpi_tests")  # not in the fallback build
  # CUDA's libraries: wherever this machine keeps them
  for lib in $(ldd "${files[@]}" 2>/dev/null | awk '/not found/ {print $1}' | sort -u); do
    [[ $lib =~ $CUDA_RE ]] || continue
    path=$(find_lib "$lib") && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$path" && log "found $lib in $path"
  done
  out=$(ldd "${files[@]}" 2>&1)
  echo "$out" >"$RES/ldd.txt"
  mapfile -t missing < <(grep -E 'not found|No such file' <<<"$out" | sed 's/^[[:space:]]*//' | sort -u)
  ((${#missing[@]} == 0)) || { fail_why "ldd: ${missing[*]}"; return 1; }
  if ((DRY)); then  # here the system has every library: each one must still come from the carried tree
    while read -r name path; do
      [[ $name =~ $BASE_RE || $name =~ $CUDA_RE || $path == "$PREFIX"/* || $path == "$d"/* ]] || outside+=("$name ($path)")
    done < <(awk '$2 == "=>" {print $1, $3}' <<<"$out" | sort -u)
    ((${#outside[@]} == 0)) || { fail_why "not carried (resolved on this machine): ${outside[*]}"; return 1; }
  fi
  "$d/bin/vae" --help >/dev/null 2>"$RES/vae-help.err" || { fail_why "vae --help failed: $(tail -1 "$RES/vae-help.err")"; return 1; }
  "$d/bin/vae_cuda_tests" --gtest_list_tests >"$RES/test-list.txt" 2>&1 || { fail_why "vae_cuda_tests --gtest_list_tests failed: $(tail -1 "$RES/test-list.txt")"; return 1; }
  V[tests_listed]=$(grep -c '^  ' "$RES/test-list.txt")
  local suite="" names=() missing_tests=()
  while IFS= read -r line; do
    [[ $line =~ ^([A-Za-z0-9_]+)\.$ ]] && suite=${BASH_REMATCH[1]}
    [[ $line =~ ^\ \ ([A-Za-z0-9_]+) ]] && names+=("$suite.${BASH_REMATCH[1]}")
  done <"$RES/test-list.txt"
  for t in "${MEMCHECK_TESTS[@]}"; do [[ " ${names[*]} " == *" $t "* ]] || missing_tests+=("$t"); done
  [[ " ${names[*]} " == *" KernelMatchesItsCpuTwin."* ]] || missing_tests+=("$KERNEL_TESTS")
  ((${#missing_tests[@]} == 0)) || { fail_why "the GPU test binary has no ${missing_tests[*]}"; return 1; }
  WHY=$(check_help "vae train" "$("$d/bin/vae" train --help 2>&1)" "${TRAIN_OPTS[@]}") || return 1
  WHY=$(check_help "vae bench" "$("$d/bin/vae" bench --help 2>&1)" "${BENCH_OPTS[@]}") || return 1
  WHY=$(check_help "gpu_kernels" "$("$d/bin/gpu_kernels" --help 2>&1)" "${KERNEL_OPTS[@]}") || return 1
}
# The -dev packages' absolute links (zlib1g-dev's libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13)
# point into a / that need not hold them: CMake then skips the dangling libz.so, takes the
# carried libz.a, which is not PIC, and linking libvae.so fails. Point them into the tree.
fix_links() {
  local l t fixed=()
  while IFS= read -r l; do
    t=$(readlink "$l")
    [[ $t == /* && -e $PREFIX$t ]] || continue
    ln -sfn "$PREFIX$t" "$l" && fixed+=("${l#"$PREFIX"} -> $PREFIX$t")
  done < <(find "$PREFIX" -type l)
  ((${#fixed[@]} == 0)) || log "absolute links pointed into the carried tree: ${fixed[*]}"
}
# configure_fallback BUILD_DIR: CMake against the carried -dev packages; every dependency
# must come from the carried tree, and none as a static archive but GoogleTest's.
configure_fallback() {
  local b=$1 bad
  # Without MPI: the carried packages hold Open MPI's runtime, not its -dev files (stage 4b skips).
  cmake --preset gpu-proof -B "$b" -DCMAKE_PREFIX_PATH="$PREFIX/usr" -DVAE_WERROR=OFF -DVAE_MPI=OFF >"$RES/fallback-configure.log" 2>&1 ||
    { fail_why "cmake configure failed: $(grep -m1 -A2 'CMake Error' "$RES/fallback-configure.log" | tr '\n' ' ')"; return 1; }
  local v found=() missing=()
  for v in ZLIB_LIBRARY_RELEASE ZLIB_INCLUDE_DIR PNG_LIBRARY_RELEASE PNG_PNG_INCLUDE_DIR FREETYPE_LIBRARY_RELEASE \
    FREETYPE_INCLUDE_DIR_ft2build VAE_OPENBLAS_LIBRARY VAE_OPENBLAS_INCLUDE_DIR GTest_DIR CLI11_DIR nlohmann_json_DIR; do
    grep -qE "^$v:[A-Z]+=$PREFIX/" "$b/CMakeCache.txt" && found+=("$v") || missing+=("$(grep -E "^$v:" "$b/CMakeCache.txt" || echo "$v unset")")
  done
  ((${#missing[@]} == 0)) || { fail_why "not from the carried packages: ${missing[*]}"; return 1; }
  bad=$(grep -oE "$PREFIX/[^;\" ]*\.a\b" "$b/CMakeCache.txt" | grep -vE 'libg(test|mock)' | sort -u | tr '\n' ' ')
  [[ -z $bad ]] || { fail_why "static archives chosen: $bad"; return 1; }
}

stage_load() {
  local t=$SECONDS size deb
  if [[ ! -f $CARRY/MANIFEST ]]; then
    stage load failed "no $CARRY/MANIFEST: run bash bench/gpu_prep.sh on the CPU machine and name .gpu-proof in carry" $((SECONDS - t))
    return 1
  fi
  size=$(du -sb "$CARRY" | cut -f1)
  V[carried]="$(basename "$CARRY"): $((size / 1048576)) MiB, prepared $(manifest date) ($(manifest build))"
  if ((size > LIMIT)); then
    stage load failed "$CARRY holds $((size / 1048576)) MiB, over the 60 MiB that may travel" $((SECONDS - t))
    return 1
  fi
  for f in bin.tar.gz data/train-images-idx3-ubyte.gz data/t10k-images-idx3-ubyte.gz cpu-ref/metrics.csv; do
    [[ -f $CARRY/$f ]] || { stage load failed "$CARRY/$f is missing: run bash bench/gpu_prep.sh again" $((SECONDS - t)); return 1; }
  done
  cp "$CARRY/MANIFEST" "$RES/MANIFEST"
  cp "$CARRY/cpu-ref/metrics.csv" "$RES/cpu-ref.metrics.csv"
  for deb in "$CARRY"/debs/run/*.deb; do
    unpack_deb "$deb" "$PREFIX" || { stage load failed "cannot unpack $deb" $((SECONDS - t)); return 1; }
  done
  mkdir -p "$WORK/carried"
  tar -C "$WORK/carried" -xzf "$CARRY/bin.tar.gz" || { stage load failed "cannot unpack $CARRY/bin.tar.gz" $((SECONDS - t)); return 1; }
  local arch=$PREFIX/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH="$WORK/carried/lib:$arch/openblas-openmp:$arch:$PREFIX/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if check_binaries "$WORK/carried"; then
    BIN=$WORK/carried
    local how="carried binaries load (ldd, vae --help; ${V[tests_listed]:-} GPU tests listed; the stages' tests and options exist)"
    if ((DRY)); then
      # The fallback is not built here, but its configuration is checked against the carried
      # -dev packages (and the zlib link fix with it).
      for deb in "$CARRY"/debs/dev/*.deb; do unpack_deb "$deb" "$PREFIX" || { stage load failed "cannot unpack $deb" $((SECONDS - t)); return 1; }; done
      fix_links
      if configure_fallback "$WORK/fallback"; then
        how+="; the fallback build configures against the carried -dev packages alone (not built in a dry run)"
      else
        stage load failed "the fallback build's configuration: $WHY" $((SECONDS - t))
        return 1
      fi
    fi
    stage load passed "$how" $((SECONDS - t))
    return 0
  fi
  if ((DRY)); then
    stage load failed "$WHY" $((SECONDS - t))
    return 1
  fi
  # The fallback: build here from the tree and the carried -dev packages.
  log "the carried binaries do not load ($WHY); building here"
  note "- The carried binaries did not load: $WHY. Built on this machine instead."
  for deb in "$CARRY"/debs/dev/*.deb; do unpack_deb "$deb" "$PREFIX" || { stage load failed "cannot unpack $deb" $((SECONDS - t)); return 1; }; done
  fix_links
  # This machine's compiler brings its own OpenMP runtime, which may be newer than Debian 12's:
  # the carried libgomp would then lack symbol versions that the new build needs.
  rm -f "$PREFIX"/usr/lib/x86_64-linux-gnu/libgomp.so*
  local b=$WORK/build c
  if ! configure_fallback "$b"; then
    stage load failed "the carried binaries do not load, and the fallback build: $WHY" $((SECONDS - t))
    return 1
  fi
  c=$(cap 300)
  timeout -k 5 "$c" cmake --build "$b" -j "$(nproc)" --target vae_cli vae_cuda_tests gpu_kernels >"$RES/fallback-build.log" 2>&1
  local rc=$?
  if ((rc != 0)); then
    stage load failed "the carried binaries do not load, and the fallback build failed (rc $rc$( ((rc == 124)) && echo ", timed out after $c s")): $(grep -m1 -E 'error|Error' "$RES/fallback-build.log" | cut -c1-300)" $((SECONDS - t))
    return 1
  fi
  mkdir -p "$WORK/built/bin" "$WORK/built/lib"
  cp "$b/vae" "$b/tests/cuda/vae_cuda_tests" "$b/bench/gpu_kernels" "$WORK/built/bin/"
  cp -L "$b/libvae.so.0" "$WORK/built/lib/"
  export LD_LIBRARY_PATH="$WORK/built/lib:$LD_LIBRARY_PATH"
  if check_binaries "$WORK/built"; then
    BIN=$WORK/built
    stage load passed "built here (the carried binaries did not load); they load" $((SECONDS - t))
    return 0
  fi
  stage load failed "built here, and still: $WHY" $((SECONDS - t))
  return 1
}

# ---- 2 and 3. tests and sanitizers, side by side -------------------------------------------
count_gtest() {  # count_gtest LOG...: "passed failed skipped", from each test's end line
  cat "$@" 2>/dev/null | awk '
    /^\[       OK \] .* \([0-9]+ ms\)$/ {p++}
    /^\[  FAILED  \] .* \([0-9]+ ms\)$/ {f++}
    /^\[  SKIPPED \] .* \([0-9]+ ms\)$/ {s++}
    END {print p + 0, f + 0, s + 0}'
}
# NCCL for the GPU tests' data-parallel step of one rank (CudaBackend.OneRankThroughNccl...):
# vae opens libnccl.so.2 at run time (kernels/allreduce.cuh); PyTorch's wheels carry one.
find_nccl() {
  local d
  if [[ -n ${VAE_NCCL_LIBRARY:-} ]]; then
    log "NCCL: VAE_NCCL_LIBRARY=$VAE_NCCL_LIBRARY (given)"
  elif d=$(find_lib libnccl.so.2); then
    export VAE_NCCL_LIBRARY=$d/libnccl.so.2
    log "NCCL: $VAE_NCCL_LIBRARY"
  else
    log "NCCL: libnccl.so.2 not found: the GPU test of one rank through NCCL skips"
    return 0
  fi
  ((DRY)) || note "- NCCL for the test of one data-parallel rank through NCCL: $VAE_NCCL_LIBRARY"
}
gpu_info() {
  if has nvidia-smi; then
    nvidia-smi >"$RES/nvidia-smi.txt" 2>&1
    local q
    q=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
    V[device]=$(cut -d, -f1 <<<"$q" | sed 's/^ *//;s/ *$//')
    V[driver]=$(cut -d, -f2 <<<"$q" | sed 's/^ *//;s/ *$//')
    V[gpu_mem]=$(cut -d, -f3 <<<"$q" | sed 's/^ *//;s/ *$//')
    log "GPU: ${V[device]:-?}, driver ${V[driver]:-?}, ${V[gpu_mem]:-?}"
  else
    log "nvidia-smi not found"
  fi
}
TEST_PIDS=()
SAN_PIDS=()
declare -A SAN_CAP
start_tests() {
  local shards=4 threads i c
  threads=$(($(nproc) / 8))
  ((threads < 1)) && threads=1
  c=$(cap 150)
  T_TESTS=$SECONDS
  TESTS_CAP=$c
  ((c < MIN_STAGE)) && return 1
  for ((i = 0; i < shards; i++)); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=passive \
      timeout -k 5 "$c" "$BIN/bin/vae_cuda_tests" --gtest_color=no >"$RES/tests-shard$i.log" 2>&1 &
    TEST_PIDS+=($!)
  done
  log "GPU tests: $shards shards of $BIN/bin/vae_cuda_tests, $threads OpenMP threads each, cap $c s"
}
finish_tests() {
  local rc worst=0 pid p f s crashed timed=0 detail
  if ((${#TEST_PIDS[@]} == 0)); then
    stage tests "skipped (no time left)" "" 0
    return
  fi
  for pid in "${TEST_PIDS[@]}"; do
    wait "$pid"
    rc=$?
    ((rc == 124 || rc == 137)) && timed=1
    ((rc > worst)) && worst=$rc
  done
  read -r p f s < <(count_gtest "$RES"/tests-shard*.log)
  # a test that started and never ended: crashed or cut off
  crashed=$(cat "$RES"/tests-shard*.log | awk '/^\[ RUN      \]/ {r[$4] = 1} /^\[ *(OK|FAILED|SKIPPED) *\] .* \([0-9]+ ms\)$/ {delete r[$4]} END {for (t in r) printf "%s ", t}')
  local unended
  unended=$(wc -w <<<"$crashed")
  f=$((f + unended))
  V[tests_passed]=$p V[tests_failed]=$f V[tests_skipped]=$s
  detail="$p passed, $f failed, $s skipped of ${V[tests_listed]:-?} listed (4 shards)"
  [[ -n $crashed ]] && detail+="; did not finish: $crashed"
  local failed_names
  failed_names=$(cat "$RES"/tests-shard*.log | grep -E '^\[  FAILED  \] .* \([0-9]+ ms\)$' | awk '{print $4}' | tr '\n' ' ')
  [[ -n $failed_names ]] && detail+="; failed: $failed_names"
  if ((s > 0)); then  # on a GPU machine no GPU test may skip: say why they did
    detail+="; skipped on a GPU machine: $(cat "$RES"/tests-shard*.log | grep -m1 -A1 ': Skipped$' | tail -1 | cut -c1-200)"
  fi
  local seen=$((p + f + s))
  if ((timed)); then
    stage tests "timed out" "after $TESTS_CAP s: $detail" $((SECONDS - T_TESTS))
  elif ((f > 0 || s > 0 || worst != 0 || seen < ${V[tests_listed]:-0})); then
    ((seen < ${V[tests_listed]:-0})) && detail+="; only $seen of ${V[tests_listed]:-} reported"
    stage tests failed "$detail" $((SECONDS - T_TESTS))
  else
    stage tests passed "$detail" $((SECONDS - T_TESTS))
  fi
}
start_sanitizers() {
  SAN=$(command -v compute-sanitizer || true)
  T_SAN=$SECONDS
  if [[ -z $SAN ]]; then
    return 1
  fi
  local c tool exclude=()
  c=$(cap 150)
  ((c < MIN_STAGE)) && { SAN=""; SAN_WHY="no time left"; return 1; }
  # The kernel-name filter's regex key is newer than the substring key: use what this one has.
  if "$SAN" --help 2>&1 | grep -A6 -- '--kernel-name-exclude' | grep -q regex; then
    exclude=(--kernel-name-exclude "regex=$CUBLAS_KERNELS")
  else
    exclude=(--kernel-name-exclude "$(tr '|' '\n' <<<"$CUBLAS_KERNELS" | sed 's/^/kns=/' | paste -sd,)")
  fi
  local memfilter
  memfilter=$(IFS=:; echo "${MEMCHECK_TESTS[*]}")
  for tool in memcheck racecheck synccheck; do
    local args=(--tool "$tool" --error-exitcode 99 --print-limit 100)
    local filter=$KERNEL_TESTS
    if [[ $tool == memcheck ]]; then filter=$memfilter; else args+=("${exclude[@]}"); fi
    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive timeout -k 5 "$c" "$SAN" "${args[@]}" "$BIN/bin/vae_cuda_tests" \
      --gtest_color=no --gtest_filter="$filter" >"$RES/sanitizer-$tool.log" 2>&1 &
    SAN_PIDS+=($!)
    SAN_CAP[$tool]=$c
  done
  log "compute-sanitizer ($SAN): memcheck on ${#MEMCHECK_TESTS[@]} backend tests, racecheck and synccheck on $KERNEL_TESTS (excluding ${exclude[*]}), cap $c s each"
}
finish_sanitizers() {
  if [[ -z ${SAN:-} ]]; then
    stage sanitizers "skipped (${SAN_WHY:-compute-sanitizer not found})" "" 0
    return
  fi
  local i=0 tool rc out n p f s parts=() bad=0 skipped=0
  for tool in memcheck racecheck synccheck; do
    wait "${SAN_PIDS[$i]}"
    rc=$?
    i=$((i + 1))
    out=$RES/sanitizer-$tool.log
    read -r p f s < <(count_gtest "$out")
    n=""
    [[ $tool == racecheck ]] &&
      n=$(grep -oE 'RACECHECK SUMMARY: [0-9]+ hazards? displayed \([0-9]+ errors?' "$out" | tail -1 | grep -oE '[0-9]+ errors?' | grep -oE '[0-9]+')
    [[ -z $n ]] && n=$(grep -oE 'ERROR SUMMARY: [0-9]+ errors?' "$out" | tail -1 | grep -oE '[0-9]+')
    if ((p + f + s == 0)) && grep -qiE 'not supported|unable to|error 999|cannot' "$out"; then
      parts+=("$tool could not run here: $(grep -m1 -iE 'not supported|unable to|error 999|cannot' "$out" | sed 's/^=* *//' | cut -c1-160)")
      skipped=$((skipped + 1))
      continue
    fi
    V[$tool]=$n
    local what="$tool: ${n:-no summary} errors, tests $p passed, $f failed, $s skipped"
    if ((rc == 124 || rc == 137)); then
      what="$tool: timed out after ${SAN_CAP[$tool]} s (tests so far: $p passed, $f failed)"
      V[$tool]=""
      bad=1
    elif [[ -z $n || $n != 0 || $f != 0 || $rc != 0 ]]; then
      bad=1
    fi
    [[ $tool == racecheck ]] && what+=" ($(grep -E 'RACECHECK SUMMARY' "$out" | tail -1 | grep -oE '[0-9]+ warnings?' || echo 'no warnings count'))"
    parts+=("$what")
  done
  local detail
  detail=$(printf '%s; ' "${parts[@]}")
  if ((skipped == 3)); then
    stage sanitizers "skipped (compute-sanitizer cannot run on this machine)" "${detail%; }" $((SECONDS - T_SAN))
  elif ((bad || skipped)); then
    stage sanitizers failed "${detail%; }" $((SECONDS - T_SAN))
  else
    stage sanitizers passed "${detail%; }" $((SECONDS - T_SAN))
  fi
}

# ---- 4. training ----------------------------------------------------------------------------
# train_run NAME ARGS...: sets TR_MS (median epoch ms) and TR_ELBO (final test -ELBO), or
# returns 1 with WHY. Called directly, not in $(...), so that its notes stay.
train_run() {
  local name=$1 c rc
  local out=$WORK/train-$name
  shift
  TR_MS="" TR_ELBO=""
  c=$(cap 90)
  ((c < MIN_STAGE)) && { fail_why "skipped (no time left)"; return 1; }
  timeout -k 5 "$c" "$BIN/bin/vae" train --device cuda "${TRAIN_DATA[@]}" --epochs 10 --seed 1 --out "$out" "$@" \
    >"$RES/train-$name.log" 2>&1
  rc=$?
  [[ -f $out/metrics.csv ]] && cp "$out/metrics.csv" "$RES/train-$name.metrics.csv"
  [[ -f $out/config.json ]] && cp "$out/config.json" "$RES/train-$name.config.json"
  if ((rc != 0)); then
    fail_why "rc $rc$( ((rc == 124)) && echo ", timed out after $c s"): $(grep -v '^[[:space:]]*$' "$RES/train-$name.log" | tail -1 | cut -c1-200)"
    return 1
  fi
  local on
  on=$(grep -m1 '^training on' "$RES/train-$name.log")
  grep -qi cuda <<<"$on" || { fail_why "did not train on the GPU: ${on:-no 'training on' line}"; return 1; }
  [[ $name == b128 ]] && cp "$out"/*.png "$RES/" 2>/dev/null
  # epochs 2-10: the first holds the graph capture and the warm-up
  TR_MS=$(awk -F, 'NR > 2 {print $6 * 1000}' "$out/metrics.csv" | sort -g |
    awk '{a[NR] = $1} END {if (NR) printf "%.2f", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}')
  TR_ELBO=$(awk -F, 'END {print $3}' "$out/metrics.csv")
  local per
  per=$(awk -F, 'NR > 1 {printf "%s%.1f", sep, $6 * 1000; sep = ", "}' "$out/metrics.csv")
  note "- train $name (\`vae train --device cuda --epochs 10 --seed 1 $*\`): median epoch $TR_MS ms (epochs 2-10); per epoch (ms): $per; test -ELBO after 10 epochs $TR_ELBO; ${on:0:160}"
}
stage_train() {
  local t=$SECONDS parts=() bad=0 cpu name args
  cpu=$(awk -F, 'END {print $3}' "$CARRY/cpu-ref/metrics.csv")
  V[elbo_cpu]=$cpu
  for name in b128 b128s b4096; do
    case $name in
      b128) args=(--batch 128) ;;
      b128s) args=(--batch 128 --stream-data) ;;
      b4096) args=(--batch 4096) ;;
    esac
    if train_run "$name" "${args[@]}"; then
      case $name in
        b128) V[epoch_ms_b128]=$TR_MS V[elbo_gpu]=$TR_ELBO ;;
        b128s) V[epoch_ms_b128s]=$TR_MS V[elbo_gpu_s]=$TR_ELBO ;;
        b4096) V[epoch_ms_b4096]=$TR_MS ;;
      esac
      parts+=("$name: $TR_MS ms/epoch, test -ELBO $TR_ELBO")
    else
      parts+=("$name: $WHY")
      bad=1
    fi
    publish
  done
  if [[ -n ${V[elbo_gpu]:-} && -n $cpu ]]; then
    V[elbo_diff]=$(awk -v g="${V[elbo_gpu]:-}" -v c="$cpu" 'BEGIN {printf "%.4f", g - c}')
    V[elbo_absdiff]=${V[elbo_diff]#-}
    parts+=("GPU - CPU test -ELBO at batch 128: ${V[elbo_diff]:-} (CPU $cpu, carried)")
  fi
  # Streamed and resident data run the same kernels on the same numbers (kernels/README.md).
  if [[ -n ${V[elbo_gpu_s]:-} && -n ${V[elbo_gpu]:-} ]]; then
    if [[ ${V[elbo_gpu_s]:-} == "${V[elbo_gpu]:-}" ]]; then
      parts+=("streamed = resident, bit for bit")
    else
      parts+=("streamed ${V[elbo_gpu_s]:-} != resident ${V[elbo_gpu]:-}")
      bad=1
    fi
  fi
  local detail
  detail=$(printf '%s; ' "${parts[@]}")
  stage train "$( ((bad)) && echo failed || echo passed)" "${detail%; }" $((SECONDS - t))
}

# ---- 5. vae bench ---------------------------------------------------------------------------
bench_numbers() {  # bench_numbers JSON BATCH: key=value lines from vae bench's JSON
  python3 - "$1" "$2" <<'PY'
import json, statistics, sys
d = json.load(open(sys.argv[1]))
b = int(sys.argv[2])
rows = {r["impl"]: r for r in d.get("results", []) if r.get("batch") == b}
for impl, r in rows.items():
    if not r.get("ok"):
        print(f"error_{impl}={r.get('error', '?')}".replace("\n", " "))
cuda = rows.get("vae-cuda")
if cuda and cuda.get("ok"):
    print(f"cuda_ms={cuda['ms_per_step_median']:.4f}")
    print(f"fraction={cuda['fraction_of_sgemm']:.4f}")
    # per epoch (the targets' measure): the mean of the real epochs after the first, each side's
    for impl, key in (("torch", "vs_eager"), ("torch-compile", "vs_compile")):
        r = rows.get(impl)
        if r and r.get("ok") and cuda.get("epoch_seconds") and r.get("epoch_seconds"):
            print(f"{key}={r['epoch_seconds'] / cuda['epoch_seconds']:.2f}")
        # per step: the median of the interleaved rounds' own ratios, as vae bench forms 'vs torch'
        if r and r.get("ok"):
            ratios = [t / c for c, t in zip(cuda["ms_per_step_rounds"], r["ms_per_step_rounds"]) if c > 0]
            if ratios:
                print(f"{key}_step={statistics.median(ratios):.2f}")
print(f"sgemm_gflops={d.get('sgemm_gflops', {}).get('cuda', 0):.0f}")
PY
}
# ---- 4b. data parallel under mpirun ---------------------------------------------------------
# The carried Open MPI, relocated: OPAL_PREFIX for Open MPI, the carried configuration files;
# shared memory between the ranks of this one machine, and no warnings about the network
# plugins whose libraries were not carried. PMIx's three plugins (zlib compression, two
# resource-manager ones) are looked for at Debian's path only, and it runs without them (tried
# with that folder moved away): its warning about compression is silenced. Local ranks
# inherit this environment (LD_LIBRARY_PATH, VAE_NCCL_LIBRARY).
mpi_env() {
  local u=$PREFIX/usr
  export OPAL_PREFIX=$u
  export OMPI_MCA_mca_base_param_files=$PREFIX/etc/openmpi/openmpi-mca-params.conf
  export OMPI_MCA_orte_default_hostfile=$PREFIX/etc/openmpi/openmpi-default-hostfile
  export OMPI_MCA_mca_base_component_show_load_errors=0 OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1
  export PMIX_MCA_pcompress_base_silence_warning=1
  export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$u/lib/x86_64-linux-gnu/openmpi/lib"
}
stage_mpi() {
  local t=$SECONDS u=$PREFIX/usr c rc rc2 dev=cuda epochs=2 detail p f s one
  ((DRY)) && dev=cpu epochs=1
  if [[ ! -x $u/bin/orterun || ! -f $BIN/bin/vae_cuda_mpi_tests ]]; then
    stage mpi "skipped (no carried mpirun or data-parallel test binary$([[ $BIN == "$WORK/built" ]] && echo ": the fallback build is without MPI"))" "" $((SECONDS - t))
    return 0
  fi
  c=$(cap 150)
  if ((c < MIN_STAGE)); then stage mpi "skipped (deadline)" "" ""; return 0; fi
  mpi_env
  local run=("$u/bin/orterun" --allow-run-as-root --oversubscribe -np 2)
  # The suite: each rank's output in its own file (rank 0's is counted; mpirun fails if any rank does).
  timeout -k 5 "$c" "${run[@]}" bash -c 'exec "$0" --gtest_color=no >"$1.rank$OMPI_COMM_WORLD_RANK" 2>&1' \
    "$BIN/bin/vae_cuda_mpi_tests" "$RES/mpi-tests.log" >"$RES/mpirun-tests.log" 2>&1
  rc=$?
  read -r p f s < <(count_gtest "$RES/mpi-tests.log.rank0")
  V[mpi_passed]=$p V[mpi_failed]=$f V[mpi_skipped]=$s
  detail="suite (mpirun -np 2 vae_cuda_mpi_tests): $p passed, $f failed, $s skipped, rc $rc"
  # One user's run: 2 ranks sharing this machine's GPU(s), against stage 4's one process.
  c=$(cap 120)
  timeout -k 5 "$c" "${run[@]}" "$BIN/bin/vae" train --device "$dev" --epochs "$epochs" --seed 1 "${TRAIN_DATA[@]}" \
    --out "$WORK/mpi-run" >"$RES/mpi-train.log" 2>&1
  rc2=$?
  V[mpi_sum]=$(sed -n 's/.*gradients summed by //p' "$RES/mpi-train.log" | head -1)
  V[mpi_elbo2]=$(awk -F, -v e="$epochs" 'NR == e + 1 {print $3}' "$WORK/mpi-run/metrics.csv" 2>/dev/null)
  one=$WORK/train-b128/metrics.csv
  [[ -f $one ]] && V[mpi_elbo1]=$(awk -F, -v e="$epochs" 'NR == e + 1 {print $3}' "$one")
  cp "$WORK/mpi-run/metrics.csv" "$RES/mpi-train.metrics.csv" 2>/dev/null
  detail+="; \`mpirun -np 2 vae train --device $dev --epochs $epochs\`: rc $rc2, gradients summed by ${V[mpi_sum]:-?}, test -ELBO ${V[mpi_elbo2]:-?}${V[mpi_elbo1]:+ (one process: ${V[mpi_elbo1]})}"
  note "- Data parallel: $detail"
  if ((rc == 124 || rc == 137 || rc2 == 124 || rc2 == 137)); then
    stage mpi "timed out" "$detail" $((SECONDS - t))
  elif ((rc != 0 || rc2 != 0 || f > 0)) || [[ -z ${V[mpi_elbo2]} ]] || { ((!DRY)) && ((p == 0 || s > 0)); }; then
    stage mpi failed "$detail" $((SECONDS - t))
  else
    stage mpi passed "$detail" $((SECONDS - t))
  fi
}

stage_bench() {
  local t=$SECONDS b c rc parts=() bad=0 json kv
  for b in 128 4096; do
    c=$(cap $((b == 128 ? 150 : 120)))
    if ((c < MIN_STAGE)); then
      parts+=("batch $b: skipped (no time left)")
      bad=1
      continue
    fi
    json=$RES/bench-b$b.json
    timeout -k 5 "$c" "$BIN/bin/vae" bench --impl cuda,torch,torch-compile --models ref --batch "$b" --epochs 3 \
      --steps 1000 --repeats 10 --python python3 --torch-script "$ROOT/bench/torch_reference.py" "${TRAIN_DATA[@]}" \
      --json "$json" >"$RES/bench-b$b.log" 2>&1
    rc=$?
    if [[ ! -f $json ]]; then
      parts+=("batch $b: no results (rc $rc$( ((rc == 124)) && echo ", timed out after $c s"): $(grep -v '^[[:space:]]*$' "$RES/bench-b$b.log" | tail -1 | cut -c1-200))")
      bad=1
      publish
      continue
    fi
    kv=$(bench_numbers "$json" "$b" 2>&1)
    get() { sed -n "s/^$1=//p" <<<"$kv" | head -1; }
    if [[ -z $(get cuda_ms) ]]; then
      :
    elif [[ $b == 128 ]]; then
      V[vs_eager]=$(get vs_eager) V[vs_compile]=$(get vs_compile)
      V[vs_eager_step]=$(get vs_eager_step) V[vs_compile_step]=$(get vs_compile_step)
      parts+=("batch 128: vae-cuda $(get cuda_ms) ms/step; per epoch PyTorch eager / vae-cuda ${V[vs_eager]:-?}x, torch.compile / vae-cuda ${V[vs_compile]:-?}x (per step: ${V[vs_eager_step]:-?}x, ${V[vs_compile_step]:-?}x)")
    else
      V[sgemm_fraction_b4096]=$(get fraction)
      parts+=("batch 4096: vae-cuda $(get cuda_ms) ms/step, ${V[sgemm_fraction_b4096]:-?} of cuBLAS SGEMM's $(get sgemm_gflops) GFLOP/s")
    fi
    if grep -q '^error_' <<<"$kv" || ((rc != 0)); then
      parts+=("batch $b: rc $rc; $(sed -n 's/^error_//p' <<<"$kv" | cut -c1-160 | paste -sd ';' | sed 's/;/; /g')")
      bad=1
    fi
    note "- \`vae bench --impl cuda,torch,torch-compile --models ref --batch $b --epochs 3 --steps 1000 --repeats 10 --python python3\`:"
    note '```'
    while IFS= read -r line; do note "$line"; done < <(grep -E '^(model|ref|784)' "$RES/bench-b$b.log")
    note '```'
    publish
  done
  local detail
  detail=$(printf '%s; ' "${parts[@]}")
  stage bench "$( ((bad)) && echo failed || echo passed)" "${detail%; }" $((SECONDS - t))
}

# ---- 6. gpu_kernels -------------------------------------------------------------------------
stage_kernels() {
  local t=$SECONDS c rc
  c=$(cap 150)
  if ((c < MIN_STAGE)); then
    stage kernels "skipped (no time left)" "" 0
    return
  fi
  timeout -k 5 "$c" "$BIN/bin/gpu_kernels" --json "$RES/gpu-kernels.json" >"$RES/gpu-kernels.log" 2>&1
  rc=$?
  if ((rc == 124 || rc == 137)); then
    stage kernels "timed out" "after $c s (the cases done so far are in gpu-kernels.log)" $((SECONDS - t))
  elif ((rc != 0)) || grep -q FAILED "$RES/gpu-kernels.log"; then
    stage kernels failed "rc $rc: $(grep -m1 -E 'FAILED|gpu_kernels:' "$RES/gpu-kernels.log" | cut -c1-200)" $((SECONDS - t))
  else
    stage kernels passed "every case checked against its CPU twin and timed; JSON in the tarball (gpu-kernels.json)" $((SECONDS - t))
    note "- \`gpu_kernels\`:"
    note '```'
    while IFS= read -r line; do note "$line"; done < <(grep -vE '^  .*: done$|^wrote ' "$RES/gpu-kernels.log" | head -60)
    note '```'
  fi
}

# ---- the run ---------------------------------------------------------------------------------
log "gpu_proof: $( ((DRY)) && echo "dry run" || echo "device run"), commit $COMMIT, results in $RESULTS, deadline ${DEADLINE_S} s"
publish
if stage_load; then
  publish
  find_nccl
  if ((DRY)); then
    for s in tests sanitizers train bench kernels; do stage "$s" "skipped (dry run)" "" ""; done
    stage_mpi
  else
    gpu_info
    start_tests
    start_sanitizers
    finish_tests
    publish
    finish_sanitizers
    publish
    stage_train
    publish
    stage_mpi
    publish
    stage_bench
    publish
    stage_kernels
  fi
else
  for s in tests sanitizers train mpi bench kernels; do stage "$s" "skipped (no binaries: stage 1 failed)" "" ""; done
fi
publish
failed=0
for s in "${STAGES[@]}"; do
  case ${ST[$s]} in
    passed) ;;
    "skipped (dry run)") ;;
    *) failed=1 ;;
  esac
done
log "gpu_proof: $( ((failed)) && echo "not every stage passed" || echo "every stage passed")$( ((DRY)) && echo " (dry run: GPU stages skipped)"); $((SECONDS - T0)) s; $RESULTS/proof.md"
publish
exit $failed
