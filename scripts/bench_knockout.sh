#!/usr/bin/env bash
# Knockout benchmark (not a test): a sweep of all four targets at window 9 (center) on the paper's
# layout (8 frames x 12x12 video tokens, 116 text tokens, S = 1268) with the SmolLM2-135M package,
# timed three ways on this machine with the same thread count:
#   (a) vidflow knockout (optimised: cached baseline, prefix K/V reuse, batched suffixes)
#   (b) vidflow knockout --naive (a full forward per knockout)
#   (c) the PyTorch reference (export/vidflow_export/reference_knockout.py --text-model smollm2:
#       HF eager attention, a full forward per knockout with the 4D min-value mask in the window)
# A full sweep is 30 sweep layers x 11 flows = 330 knockouts. (b) and (c) cost a full forward per
# knockout, so all three are timed on the same subset of sweep layers (SUBSET, default 12-15: 33
# knockouts) and the subset's records of (a), (b) and (c) are checked to agree (%change within
# 0.01 pp); the full optimised sweep is timed for real (unless FULL_OPT=0), and FULL_SLOW=1 also times
# (b) and (c) on the full sweep (hours on 2 cores). A run of one no-op flow (it blocks no causal
# edge, so it costs nothing) measures vidflow's fixed cost: opening the package, decoding the video,
# the baseline and the reports.
#
# Builds what is missing: the release binary, the package (out/smollm2-video, a few minutes), a
# 4 s test-pattern video and a one-sample list. Results: $OUT/bench.json and $OUT/bench.md; the
# runs' records, logs, timings (GNU time: wall, user, sys, max RSS) and load averages under
# $OUT/runs/.
#
#   scripts/bench_knockout.sh                  # THREADS=2 SUBSET=12-15 FULL_OPT=1 FULL_SLOW=0
#   SUMMARY_ONLY=1 scripts/bench_knockout.sh   # only re-summarise the runs already in $OUT/runs
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
PKG=${PKG:-out/smollm2-video}
OUT=${OUT:-out/knockout-bench}
THREADS=${THREADS:-2}
SUBSET=${SUBSET:-12-15}
FULL_OPT=${FULL_OPT:-1}
FULL_SLOW=${FULL_SLOW:-0}
SUMMARY_ONLY=${SUMMARY_ONLY:-0}
TARGETS=cross-frame,vql-to-ql,question-and-options-to-last,vq-to-true-opt
WINDOW=9
STYLE=center
VIDFLOW=target/release/vidflow
RUNS="$OUT/runs"

if [ "$SUMMARY_ONLY" != 1 ]; then
echo "[bench] building the release binary (a no-op when current)"
cargo build --release --quiet --bin vidflow

if [ ! -f "$PKG/model.yaml" ]; then
  echo "[bench] building the SmolLM2 package in $PKG (about 1.3 GB, a few minutes)"
  "$PY" -m vidflow_export smollm2-package --out "$PKG"
fi

mkdir -p "$OUT" "$RUNS"
if [ ! -f "$OUT/clip.mp4" ]; then
  ffmpeg -y -loglevel error -f lavfi -i testsrc2=size=320x240:rate=8 -t 4 -c:v libx264 \
    -pix_fmt yuv420p "$OUT/clip.mp4"
fi
# The question and options of the latency benchmark in docs/benchmarks.md (bench): 116 text tokens.
cat >"$OUT/samples.json" <<'EOF'
[
  {"id": "bench-0", "task": "bench", "video": "clip.mp4",
   "question": "After the man in the red jacket lifts the box from the table, where does he carry it?",
   "options": ["To the left, onto the floor", "To the right, onto the chair",
               "Forward, next to the door", "He does not move the box"],
   "answer": 1}
]
EOF
# One flow that blocks no causal edge (system queries never read the later `last` key).
cat >"$OUT/noop_flow.yaml" <<'EOF'
flows:
  - {name: no-op, source: last, target: system}
EOF

COMMON=(--model "$PKG" --data "$OUT/samples.json" --window "$WINDOW" --window-style "$STYLE"
  --all-samples --quiet --threads "$THREADS")

echo "[bench] dumping the exact inputs for the reference (untimed)"
rm -rf "$RUNS/dump" "$RUNS/dump_run"
"$VIDFLOW" knockout "${COMMON[@]}" --targets vql-to-ql --layers 0-1 --out "$RUNS/dump_run" \
  --dump-inputs "$RUNS/dump" >/dev/null

# timed NAME COMMAND...: GNU time (wall user sys) into runs/NAME.time, load averages before and
# after into runs/NAME.load, output into runs/NAME.log.
timed() {
  local name=$1
  shift
  local before after
  before=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "[bench] $name (load $before)"
  /usr/bin/time -f '%e %U %S %M' -o "$RUNS/$name.time" "$@" >"$RUNS/$name.log" 2>&1
  after=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "$before|$after" >"$RUNS/$name.load"
  echo "[bench] $name: $(cat "$RUNS/$name.time") (wall s, user s, sys s, max RSS KB); load after $after"
}

vidflow_run() { # NAME LAYERS EXTRA...
  local name=$1 layers=$2
  shift 2
  rm -rf "${RUNS:?}/$name"
  timed "$name" "$VIDFLOW" knockout "${COMMON[@]}" --layers "$layers" --out "$RUNS/$name" "$@"
}

reference_run() { # NAME LAYERS
  local name=$1 layers=$2
  timed "$name" "$PY" -m vidflow_export.reference_knockout --text-model smollm2 \
    --inputs "$RUNS/dump" --out "$RUNS/$name.jsonl" --targets "$TARGETS" --window "$WINDOW" \
    --window-styles "$STYLE" --layers "$layers" --all-samples --threads "$THREADS" \
    --timing "$RUNS/$name.timing.json"
}

uptime >"$RUNS/uptime_before.txt"
vidflow_run overhead "$SUBSET" --flows "$OUT/noop_flow.yaml"
vidflow_run optimised_subset "$SUBSET" --targets "$TARGETS"
vidflow_run naive_subset "$SUBSET" --targets "$TARGETS" --naive
reference_run reference_subset "$SUBSET"
if [ "$FULL_OPT" = 1 ]; then
  vidflow_run optimised_full 0-30 --targets "$TARGETS"
fi
if [ "$FULL_SLOW" = 1 ]; then
  vidflow_run naive_full 0-30 --targets "$TARGETS" --naive
  reference_run reference_full 0-30
fi
uptime >"$RUNS/uptime_after.txt"
fi

"$PY" - "$OUT" "$SUBSET" "$THREADS" <<'EOF'
import json, os, sys

out, subset, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = os.path.join(out, "runs")
FULL = 30 * 11
TOL = 0.01  # percentage points


def read_time(name):
    wall, user, sys_, rss = (float(x) for x in open(os.path.join(runs, name + ".time")).read().split()[-4:])
    before, after = open(os.path.join(runs, name + ".load")).read().strip().split("|")
    return {"wall_s": wall, "cpu_s": user + sys_, "max_rss_gb": rss / 2**20, "load_before": before,
            "load_after": after}


def records(name):
    path = os.path.join(runs, name, "knockouts.jsonl") if os.path.isdir(os.path.join(runs, name)) \
        else os.path.join(runs, name + ".jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f]


def key(r):
    return (r["sample_id"], r["window_style"], r["flow"], r["layer"])


def worst_diff(a, b):
    ka = {key(r): r for r in a}
    assert len(ka) == len(a) == len(b), f"record counts differ: {len(a)} vs {len(b)}"
    worst, tokens = 0.0, 0
    for r in b:
        o = ka[key(r)]
        for f in ("pct_change_pred", "pct_change_true"):
            worst = max(worst, abs(o[f] - r[f]))
        tokens += o["new_token"] != r["new_token"]
    return worst, tokens


res = {"threads": threads, "subset_layers": subset, "full_knockouts": FULL, "runs": {}}
over = read_time("overhead")
res["runs"]["overhead"] = over
for name in ("optimised_subset", "naive_subset", "optimised_full", "naive_full"):
    if not os.path.exists(os.path.join(runs, name + ".time")):
        continue
    t = read_time(name)
    n = len(records(name))
    t["knockouts"] = n
    t["per_knockout_s"] = (t["wall_s"] - over["wall_s"]) / n
    t["per_knockout_cpu_s"] = (t["cpu_s"] - over["cpu_s"]) / n
    res["runs"][name] = t
for name in ("reference_subset", "reference_full"):
    if not os.path.exists(os.path.join(runs, name + ".time")):
        continue
    t = read_time(name)
    timing = json.load(open(os.path.join(runs, name + ".timing.json")))
    n = timing["knockouts"]
    t.update(knockouts=n, fixed_s=t["wall_s"] - timing["knockout_s"],
             fixed_cpu_s=t["cpu_s"] - timing["knockout_cpu_s"], load_s=timing["load_s"],
             baseline_s=timing["baseline_s"], per_knockout_s=timing["knockout_s"] / n,
             per_knockout_cpu_s=timing["knockout_cpu_s"] / n)
    res["runs"][name] = t

R = res["runs"]
ref_sub = records("reference_subset")
w_opt, tok_opt = worst_diff(records("optimised_subset"), ref_sub)
w_naive, tok_naive = worst_diff(records("naive_subset"), ref_sub)
res["agreement"] = {"optimised_vs_reference_pp": w_opt, "optimised_new_token_mismatches": tok_opt,
                    "naive_vs_reference_pp": w_naive, "naive_new_token_mismatches": tok_naive,
                    "tolerance_pp": TOL, "agree": w_opt <= TOL and w_naive <= TOL}

# Full sweep: measured where run, else fixed cost + 330 x the subset's per-knockout time (wall and
# CPU seconds; CPU time is the less load-sensitive of the two on a shared machine).
full = {}
for tool, fixed, fixed_cpu in (("optimised", over["wall_s"], over["cpu_s"]),
                               ("naive", over["wall_s"], over["cpu_s"]),
                               ("reference", R["reference_subset"]["fixed_s"], R["reference_subset"]["fixed_cpu_s"])):
    if f"{tool}_full" in R:
        full[tool] = {"seconds": R[f"{tool}_full"]["wall_s"], "cpu_seconds": R[f"{tool}_full"]["cpu_s"],
                      "measured": True}
    else:
        sub = R[f"{tool}_subset"]
        full[tool] = {"seconds": fixed + FULL * sub["per_knockout_s"],
                      "cpu_seconds": fixed_cpu + FULL * sub["per_knockout_cpu_s"], "measured": False}
res["full_sweep"] = full
json.dump(res, open(os.path.join(out, "bench.json"), "w"), indent=2)

ref = R["reference_subset"]
lines = [
    f"Subset: sweep layers {subset} x 11 flows = {R['optimised_subset']['knockouts']} knockouts, "
    f"{threads} threads; per knockout = (wall - fixed) / knockouts.",
    "",
    "| | wall s (subset) | CPU s (subset) | s per knockout | CPU s per knockout | time / reference | speedup vs reference | max RSS GB |",
    "|---|---|---|---|---|---|---|---|",
]
for label, name in (("vidflow optimised", "optimised_subset"), ("vidflow naive", "naive_subset"),
                    ("PyTorch reference", "reference_subset")):
    t = R[name]
    ratio = t["per_knockout_s"] / ref["per_knockout_s"]
    lines.append(f"| {label} | {t['wall_s']:.1f} | {t['cpu_s']:.1f} | {t['per_knockout_s']:.3f} | "
                 f"{t['per_knockout_cpu_s']:.3f} | {ratio:.3f} | {1 / ratio:.1f}x | {t['max_rss_gb']:.1f} |")
lines += ["", f"Fixed costs: vidflow {over['wall_s']:.1f} s (package, video, baseline, reports); reference "
          f"{ref['fixed_s']:.1f} s (imports, GGUF load {ref['load_s']:.1f} s, baseline {ref['baseline_s']:.1f} s).",
          "", "| full sweep (330 knockouts) | wall s | CPU s | | max RSS GB |", "|---|---|---|---|---|"]
for tool in ("optimised", "naive", "reference"):
    f = full[tool]
    rss = R[f"{tool}_full"]["max_rss_gb"] if f["measured"] else R[f"{tool}_subset"]["max_rss_gb"]
    lines.append(f"| {tool} | {f['seconds']:.0f} | {f['cpu_seconds']:.0f} | {'measured' if f['measured'] else 'extrapolated'} | "
                 f"{rss:.1f}{'' if f['measured'] else ' (subset)'} |")
o = full["optimised"]["seconds"]
oc = full["optimised"]["cpu_seconds"]
lines += ["", f"Full sweep speedup (wall): optimised vs reference {full['reference']['seconds'] / o:.1f}x, "
          f"optimised vs naive {full['naive']['seconds'] / o:.1f}x; (CPU time): "
          f"{full['reference']['cpu_seconds'] / oc:.1f}x and {full['naive']['cpu_seconds'] / oc:.1f}x.",
          f"Agreement on the subset: optimised vs reference {w_opt:.2e} pp, naive vs reference {w_naive:.2e} pp "
          f"(tolerance {TOL}); new-token mismatches {tok_opt} / {tok_naive}.",
          f"Load averages (1/5/15 min) before/after each run: " + "; ".join(
              f"{k} {v['load_before']} -> {v['load_after']}" for k, v in R.items())]
text = "\n".join(lines) + "\n"
open(os.path.join(out, "bench.md"), "w").write(text)
print(text)
sys.exit(0 if res["agreement"]["agree"] else 1)
EOF
