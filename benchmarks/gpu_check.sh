#!/usr/bin/env bash
# The prepared GPU check: one command on a machine with one CUDA GPU, under 8 minutes.
#
#   bash benchmarks/gpu_check.sh            # needs CUDA; writes benchmarks/results/gpu-check-<UTC time>/
#   bash benchmarks/gpu_check.sh --dry-run  # CPU, tiny sizes, 1 repeat, into a temp folder: checks the wiring
#
# (a) the CUDA tests: pytest -m cuda tests/test_cuda.py (CUDA vs CPU teacher step, bf16 step, CUDA-event timer)
# (b) `distill bench latency` on the shipped teachers (distill/assets/teachers/mnist, digits) at batch 1 and 64,
#     fp16 and bf16, channels-last off/on, torch.compile off/on (16 runs, 1 and 4 steps, guidance 1 and 2)
# (c) benchmarks/sd_latency.py: 1-step latency of an SD 1.5-architecture pipeline at 512x512, random weights
# Each part writes JSON and markdown under the output folder; summary.md gathers the markdown tables.
# A part that fails or runs past its time limit is reported and the others still run; parts left when
# the budget (GPU_CHECK_BUDGET_S, default 450 s) is spent are skipped and listed. The exit status is
# non-zero if any part failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "gpu_check.sh: error: unknown argument '$1' (usage: bash benchmarks/gpu_check.sh [--dry-run])" >&2; exit 2 ;;
esac

if [[ $DRY == 0 ]]; then
  if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check.sh: error: no CUDA GPU visible (torch.cuda.is_available() is False); run with --dry-run to check the wiring on CPU" >&2
    exit 1
  fi
  OUT=${GPU_CHECK_OUT:-benchmarks/results/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}
else
  OUT=${GPU_CHECK_OUT:-$(mktemp -d -t gpu-check-dry-XXXXXX)}
fi
mkdir -p "$OUT" || { echo "gpu_check.sh: error: cannot create $OUT" >&2; exit 2; }
START=$SECONDS
DEADLINE=${GPU_CHECK_BUDGET_S:-450}  # the whole check stays under 8 minutes: later parts are skipped past it
FAILED=(); SKIPPED=()

step() {  # step NAME LIMIT_S CMD...: run CMD with a time limit (cut to what is left), log to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - (SECONDS - START)))
  if (( left < 15 )); then echo "== $name: skipped (time budget spent)"; SKIPPED+=("$name"); return; fi
  (( limit > left )) && limit=$left
  echo "== $name (limit ${limit}s)"
  if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "   ok ($((SECONDS - START))s elapsed)"
  else
    echo "   FAILED (status $?; see $OUT/$name.log)"; tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'
    FAILED+=("$name")
  fi
}

# (a) CUDA tests (on CPU in --dry-run they are collected and skipped: the marker wiring is checked)
step cuda-tests 150 $PY -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider --junitxml="$OUT/cuda-tests.xml"

# (b) latency bench on the shipped teachers; (c) SD 1.5 between the eager and the compiled runs, so that
# a slow compilation can only cost compiled rows
if [[ $DRY == 0 ]]; then
  TEACHERS=(mnist digits); DTYPES=(fp16 bf16); LAYOUTS=(off on); COMPILES=(off on)
  COMMON=(--device cuda --batch-sizes 1 64 --teacher-steps 1 4 --warmup 3 --repeats 20 --budget 2 --no-plots --quiet)
else
  TEACHERS=(digits); DTYPES=(fp32); LAYOUTS=(off); COMPILES=(off)
  COMMON=(--device cpu --batch-sizes 1 --teacher-steps 1 --warmup 1 --repeats 1 --profile-repeats 0 --no-plots --quiet)
fi
latency_grid() {  # latency_grid off|on: every teacher x dtype x layout with torch.compile off or on
  local co=$1 t d cl name flags
  for t in "${TEACHERS[@]}"; do for d in "${DTYPES[@]}"; do for cl in "${LAYOUTS[@]}"; do
    name="latency-$t-$d-cl_$cl-compile_$co"
    flags=(); [[ $cl == on ]] && flags+=(--channels-last); [[ $co == on ]] && flags+=(--compile)
    step "$name" $([[ $co == on ]] && echo 120 || echo 40) \
      $PY benchmarks/latency.py --teacher "distill/assets/teachers/$t" --dtype "$d" "${COMMON[@]}" "${flags[@]}" \
        --out "$OUT" --name "$name"
  done; done; done
}
latency_grid off

if [[ $DRY == 0 ]]; then
  step sd15-latency 150 $PY benchmarks/sd_latency.py --device cuda --dtype fp16 --batch-sizes 1 4 --out "$OUT"
else
  step sd15-latency 120 $PY benchmarks/sd_latency.py --dry-run --out "$OUT"
fi

[[ " ${COMPILES[*]} " == *" on "* ]] && latency_grid on

{
  echo "# GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ)$([[ $DRY == 1 ]] && echo ' (dry run, CPU)')"
  echo
  $PY -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"
  echo
  echo "Failed parts: ${FAILED[*]:-none}. Skipped (time budget): ${SKIPPED[*]:-none}. Total $((SECONDS - START)) s."
  for f in "$OUT"/latency-*.md "$OUT"/sd15-*.md; do [[ -f $f ]] && { echo; echo "## $(basename "$f" .md)"; echo; cat "$f"; }; done
} >"$OUT/summary.md"
echo "wrote $OUT/summary.md ($((SECONDS - START)) s)"
[[ ${#FAILED[@]} == 0 ]]
