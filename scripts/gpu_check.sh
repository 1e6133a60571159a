#!/usr/bin/env bash
# The device check of vidflow on a GPU machine that has an NVIDIA GPU (CUDA 13), Python with PyTorch,
# transformers, onnx and the nvidia CUDA libraries, but no FFmpeg, no Rust toolchain and no package
# registry (docs/gpu-check.md). Run from a copy of this repository:
#
#   bash scripts/gpu_check.sh [--out DIR] [--vidflow BIN] [--ort-parts DIR] [--python PY]
#                             [--layers N] [--runs N] [--skip-7b] [--keep-work] [--dry-run]
#
#   --out DIR        everything the script writes goes under DIR (default: $OUT if set, else out/gpu-check);
#                    results: gpu_check.log, check_tiny_fp32.json, check_tiny_fp16.json, bench_7b.json,
#                    summary.txt; scratch (ONNX Runtime, exported packages) under DIR/work, removed at the
#                    end unless --keep-work
#   --vidflow BIN    the vidflow binary built without FFmpeg (cargo build --release --no-default-features);
#                    default: $VIDFLOW_BIN, else target-nofeat/release/vidflow, else target/release/vidflow
#   --ort-parts DIR  ONNX Runtime's GPU build packed by ort-gpu-parts.sh: part-*, SHA256SUMS-unpacked, PACK
#                    (default: .gpu)
#   --python PY      Python with torch, transformers, onnx (default: python3)
#   --layers N       decoder layers of the 7B-shaped package (default 4)
#   --runs N         timed bench runs per mode (default 5)
#   --skip-7b        skip the 7B-shaped export and benchmark
#   --device DEV     cuda (default), or cpu to try the script's plumbing on a machine without a GPU
#   --ort-lib FILE   use this libonnxruntime.so instead of reassembling --ort-parts
#   SHAPED_ARGS      (environment) extra flags for `vidflow_export shaped`, e.g. smaller dimensions for a
#                    trial run: SHAPED_ARGS="--hidden 256 --heads 4 --kv-heads 4 --intermediate 512"
#   --dry-run        print every step without running it
#
# Steps: (1) reassemble ONNX Runtime's GPU libraries and point vidflow at them; (2) `vidflow doctor` if
# this binary has it; (3) `vidflow check` of tests/fixtures/tiny (fp32) on CUDA at 1e-4 with TF32 off;
# (4) the tiny model exported in fp16 here, with golden files from PyTorch, checked on CUDA at 1e-2;
# (5) a package with LLaVA-NeXT-Video-7B's layer shape (random weights, fp16, exported here) benchmarked
# full vs pruned at S = 1267, with ms per layer and the fraction of the GPU's fp16 peak.
#
# TF32: ONNX Runtime's CUDA provider can round fp32 MatMul/Gemm inputs to TF32 (10 mantissa bits, far
# from the 1e-4 golden contract). vidflow sets the provider option `use_tf32` explicitly, off unless
# `--cuda-tf32` is given (src/runtime/providers.rs), and this script also sets NVIDIA_TF32_OVERRIDE=0,
# which cuBLAS and cuDNN honour over any programmatic setting, so nothing else can turn it back on.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

OUTDIR=${OUT:-out/gpu-check}
BIN=${VIDFLOW_BIN:-}
PARTS=.gpu
PY=python3
LAYERS=4
RUNS=5
SKIP_7B=0
DEVICE=cuda
ORT_LIB=
KEEP=0
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUTDIR=$2; shift 2 ;;
    --vidflow) BIN=$2; shift 2 ;;
    --ort-parts) PARTS=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --layers) LAYERS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --skip-7b) SKIP_7B=1; shift ;;
    --device) DEVICE=$2; shift 2 ;;
    --ort-lib) ORT_LIB=$2; shift 2 ;;
    --keep-work) KEEP=1; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$BIN" ]; then
  for b in target-nofeat/release/vidflow target/release/vidflow; do
    if [ -x "$b" ]; then BIN=$b; break; fi
  done
  BIN=${BIN:-target-nofeat/release/vidflow}
fi

# NVIDIA H200 (SXM) dense FP16/BF16 Tensor Core peak: the H200 datasheet lists 1,979 TFLOPS "with
# sparsity"; dense is half of that (NVIDIA H200 Tensor Core GPU datasheet, nvidia.com/en-us/data-center/h200).
PEAK_TFLOPS=989
SEQ_LEN=1267
PATHWAYS=configs/pathways/llava-next-7b-video-ft.yaml

WORK=$OUTDIR/work
LOG=$OUTDIR/gpu_check.log
SUMMARY=$OUTDIR/summary.txt
mkdir -p "$OUTDIR"
if [ "$DRY" = 0 ]; then
  mkdir -p "$WORK"
  : > "$LOG"
  : > "$SUMMARY"
  exec > >(tee -a "$LOG") 2>&1
fi

FAILED=0
# step NAME COMMAND: prints the step and its command; runs it (bash -c, pipefail) unless --dry-run.
# A failing step is recorded in summary.txt and the script goes on with the next one.
step() {
  local name=$1 cmd=$2
  echo
  echo "=== $name"
  echo "+ $cmd"
  [ "$DRY" = 1 ] && return 0
  local t0=$SECONDS rc=0
  bash -o pipefail -c "$cmd" || rc=$?
  local line
  if [ "$rc" = 0 ]; then line="PASS  $name ($((SECONDS - t0)) s)"; else line="FAIL  $name (exit $rc, $((SECONDS - t0)) s)"; FAILED=$((FAILED + 1)); fi
  echo "$line" | tee -a "$SUMMARY"
  return 0
}

export PYTHONPATH=$ROOT/export${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export NVIDIA_TF32_OVERRIDE=0
ORT_DIR=$WORK/ort

echo "vidflow GPU check: binary $BIN, ORT parts $PARTS, output $OUTDIR$([ "$DRY" = 1 ] && echo ' (dry run)')"

step "machine" "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo 'no nvidia-smi'; \
$PY -c 'import torch, transformers, onnx; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available(), \"transformers\", transformers.__version__, \"onnx\", onnx.__version__)'; \
ldd '$BIN' | grep -E 'libav|libsw' && { echo 'this vidflow links FFmpeg: build it with --no-default-features'; exit 1; } || echo 'vidflow links no FFmpeg library'"

# ONNX Runtime's GPU build, packed by ort-gpu-parts.sh (zstd, or xz where zstd is missing).
if [ -n "$ORT_LIB" ]; then
  ORT_DIR=$(cd "$(dirname "$ORT_LIB")" && pwd)
  echo "using $ORT_LIB (no reassembly)"
else
step "reassemble ONNX Runtime (GPU) from $PARTS" "mkdir -p '$ORT_DIR' && \
if [ \"\$(cat '$PARTS/PACK' 2>/dev/null || echo zstd)\" = xz ]; then \
  cat '$PARTS'/part-* | $PY -c 'import lzma,sys;sys.stdout.buffer.write(lzma.decompress(sys.stdin.buffer.read()))' | tar -x -C '$ORT_DIR'; \
else cat '$PARTS'/part-* | zstd -dc | tar -x -C '$ORT_DIR'; fi && \
(cd '$ORT_DIR' && sha256sum -c --quiet SHA256SUMS-unpacked) && ls -l '$ORT_DIR'"
fi

# The CUDA provider loads cuBLAS, cuBLASLt, cuRAND and the CUDA runtime from PyTorch's nvidia wheels.
if [ -n "$ORT_LIB" ]; then
  VIDFLOW_ORT_LIB=$ORT_LIB
  NV_LIBS=$($PY -c 'import nvidia,os;p=list(nvidia.__path__)[0];print(":".join(os.path.join(p,d,"lib") for d in sorted(os.listdir(p)) if os.path.isdir(os.path.join(p,d,"lib"))))' 2>/dev/null || true)
elif [ "$DRY" = 0 ]; then
  VIDFLOW_ORT_LIB=$(ls "$ORT_DIR"/libonnxruntime.so.* 2>/dev/null | head -n 1 || true)
  NV_LIBS=$($PY -c 'import nvidia,os;p=list(nvidia.__path__)[0];print(":".join(os.path.join(p,d,"lib") for d in sorted(os.listdir(p)) if os.path.isdir(os.path.join(p,d,"lib"))))' 2>/dev/null || true)
else
  VIDFLOW_ORT_LIB="$ORT_DIR/libonnxruntime.so.1.31.1"
  NV_LIBS='<site-packages/nvidia/*/lib>'
fi
export VIDFLOW_ORT_LIB
export LD_LIBRARY_PATH=$ORT_DIR:$NV_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "VIDFLOW_ORT_LIB=$VIDFLOW_ORT_LIB"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
echo "NVIDIA_TF32_OVERRIDE=$NVIDIA_TF32_OVERRIDE"

# `vidflow doctor` is being added separately; older binaries lack it.
step "vidflow doctor (if present)" "if '$BIN' doctor --help >/dev/null 2>&1; then '$BIN' doctor --device $DEVICE || '$BIN' doctor; \
else echo 'this vidflow has no doctor command; skipped'; fi"

# Python helpers, passed through the environment so that no quoting of theirs meets the shell's.
# SHOW_PY prints a check report (JSON) as a table.
SHOW_PY=$(cat <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(r["model"], r["dtype"], "on", r["device"], "tolerance", r["tolerance"])
for c in r["checks"]:
    print(c["status"].upper(), c["name"], "max_abs_diff=%.3e max_err=%.3e" % (c["max_abs_diff"], c["max_err"]), c.get("detail") or "")
print("passed" if r["passed"] else "FAILED")
PYEOF
)
# BENCH_PY turns `vidflow bench --json` into ms per layer and the fraction of the GPU's peak.
BENCH_PY=$(cat <<'PYEOF'
import json, sys
from vidflow_export.manifest import read
bench = json.load(open(sys.argv[1]))
m = read(sys.argv[2])
peak = float(sys.argv[3]) * 1e12
want_s = int(sys.argv[4])
D, H, Hkv, Dh, I, L = (m[k] for k in ("hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "num_layers"))
S = bench["seq_len"]
if S != want_s:
    print(f"note: the bench prompt gave S = {S}, not {want_s}")
# Weights of one layer (q, k, v, o projections and the SwiGLU MLP; norms are negligible).
params = D * H * Dh + 2 * D * Hkv * Dh + H * Dh * D + 3 * D * I
layer_flops = 2 * params * S + 4 * S * S * D  # the matmuls, plus attention scores and weighted values
print(f"S = {S}, {L} layers, {params / 1e6:.1f} M parameters per layer, {layer_flops / 1e9:.1f} GFLOP per full layer")
print(f"peak {peak / 1e12:.0f} TFLOP/s (H200 dense fp16 tensor cores): a full layer takes {layer_flops / peak * 1e3:.3f} ms at peak")
full = next(x for x in bench["modes"] if x["mode"] == "full")
for mode in bench["modes"]:
    secs = mode["p50_ms"] / 1e3
    # The formula for the full run; a pruned run by the same formula times its plan's share of the
    # full run's FLOPs (bench JSON counts both the same way).
    flops = layer_flops * L * mode["flops"] / full["flops"]
    print(f"{mode['mode']}: p50 {mode['p50_ms']:.2f} ms = {mode['p50_ms'] / L:.3f} ms per layer (head included), "
          f"{flops / secs / 1e12:.3g} TFLOP/s = {100 * flops / secs / peak:.3g}% of peak; rows {mode['rows_computed']}, "
          f"paired speedup {mode['paired_speedup']:.2f}x (predicted {mode['predicted_speedup']:.2f}x)")
PYEOF
)
# BENCH_ARGS_PY prints the bench prompt's flags, one per line.
BENCH_ARGS_PY=$(cat <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1]))
print("--question"); print(p["question"]); print("--answer"); print(p["answer"])
for o in p["options"]:
    print("--option"); print(o)
PYEOF
)
export SHOW_PY BENCH_PY BENCH_ARGS_PY
SHOW="$PY -c \"\$SHOW_PY\""

step "check tests/fixtures/tiny (fp32) on $DEVICE at 1e-4, TF32 off" "rc=0; '$BIN' check --model tests/fixtures/tiny --device $DEVICE --tolerance 1e-4 --json \
> '$OUTDIR/check_tiny_fp32.json' || rc=\$?; $SHOW '$OUTDIR/check_tiny_fp32.json'; exit \$rc"

step "export the tiny model in fp16 with golden files" "$PY -m vidflow_export build-tiny --out '$WORK/tiny-hf' --seed 0 && \
$PY -m vidflow_export export --hf '$WORK/tiny-hf' --out '$WORK/tiny-fp16' --dtype float16 --name tiny-llava-next-video-fp16 && \
$PY -m vidflow_export golden --hf '$WORK/tiny-hf' --package '$WORK/tiny-fp16'"

step "check the fp16 tiny package on $DEVICE at 1e-2" "rc=0; '$BIN' check --model '$WORK/tiny-fp16' --device $DEVICE --tolerance 1e-2 --json \
> '$OUTDIR/check_tiny_fp16.json' || rc=\$?; $SHOW '$OUTDIR/check_tiny_fp16.json'; exit \$rc"

if [ "$SKIP_7B" = 0 ]; then
  SHAPED=$WORK/shaped-7b
  step "export a 7B-shaped package (hidden 4096, 32 heads, 32 kv heads, MLP 11008, $LAYERS layers, fp16${SHAPED_ARGS:+; overridden: $SHAPED_ARGS})" \
    "$PY -m vidflow_export shaped --out '$SHAPED' --layers $LAYERS --seq-len $SEQ_LEN --dtype float16 ${SHAPED_ARGS:-} && du -sh '$SHAPED'"

  # The bench prompt (bench_prompt.json) is padded so that the layout has S = 1267 positions.
  step "bench full vs pruned ($PATHWAYS, scaled) on $DEVICE at S = $SEQ_LEN" "mapfile -t PROMPT < <($PY -c \"\$BENCH_ARGS_PY\" '$SHAPED/bench_prompt.json') && \
'$BIN' bench --model '$SHAPED' --device $DEVICE --mode full --mode 'pathways:$PATHWAYS' --scale --runs $RUNS --warmup 2 \
\"\${PROMPT[@]}\" --json > '$OUTDIR/bench_7b.json' && \
$PY -c \"\$BENCH_PY\" '$OUTDIR/bench_7b.json' '$SHAPED/model.yaml' $PEAK_TFLOPS $SEQ_LEN"
fi

echo
echo "=== summary"
if [ "$DRY" = 1 ]; then
  echo "dry run: nothing was run"
  exit 0
fi
cat "$SUMMARY"
if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; fi
if [ "$FAILED" -gt 0 ]; then
  echo "$FAILED step(s) failed"
  exit 1
fi
echo "all steps passed"
