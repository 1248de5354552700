#!/usr/bin/env bash
# The GPU figures of the README's "Speed" section, on one CUDA GPU, from the repository root:
#   CSELAB_DATA_DIR=<data> bash tests/benchmarks/run_gpu.sh [OUT]
# (needs $CSELAB_DATA_DIR/unsup/sentences.txt and docs/wikitext_docs.jsonl; no network).
set -uo pipefail
OUT=${1:-build/benchmarks/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | grep --line-buffered -v -i warn | tee "$OUT/gpu.txt"
timeout 360 python3 tests/benchmarks/bench_report.py --device cuda --bert-base-shape --steps 20 --rounds 2 \
    --sweep 256,1024 --compile --st-steps 30 --out "$OUT" 2>&1 | grep --line-buffered -v -i warn | tee "$OUT/bench_report.log"
timeout 180 python3 tests/benchmarks/gpu_check.py "$OUT" 2>&1 | grep --line-buffered -v -i warn | tee "$OUT/gpu_check.log"
