#!/usr/bin/env bash
# The device check, run on a machine with an NVIDIA GPU (driver only: no .NET SDK or runtime)
# from the bundle scripts/gpu-bundle.sh makes. Every result goes into one folder:
#   gpu-check/gpu-check.sh [RESULTS_FOLDER]      (default: ./gpu-check-results)
# Steps, each under its own time limit so the whole stays under 8 minutes:
#   1. greedy generate on the built-in stories260K, --device cuda and cpu, compared byte for byte;
#   2. the test suite's cases on the "cuda" backend (kernels, budgets, end-to-end);
#   3. logits of a Llama-3.2-1B-preset model (F16, made here from its seed) cuda vs cpu, with cmp;
#   4. bench --device cuda on that model in F16, BF16 and Q4_K_M.
# summary.txt lists each step as PASS, FAIL or SKIP; the exit code is the number of failures.
set -u
here=$(cd "$(dirname "$0")" && pwd)
results=$(mkdir -p "${1:-gpu-check-results}" && cd "${1:-gpu-check-results}" && pwd)
# The generated models (2–3 GB each) stay beside the bundle, out of the results.
work=${GPU_CHECK_WORK:-$here/models}
mkdir -p "$work"
cli=$here/cli/ilgpullm
tests=$here/tests/IlgpuLlm.Tests
summary=$results/summary.txt
failures=0
: > "$summary"
export DOTNET_gcServer=0

note() { echo "$*" | tee -a "$summary"; }

# step NAME SECONDS COMMAND...: runs COMMAND, its standard output in NAME.out and its errors in
# NAME.log, and records PASS/FAIL.
step() {
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$results/$name.out" 2> "$results/$name.log"
    local rc=$?
    local verdict=PASS
    [ $rc -eq 0 ] || { verdict="FAIL (exit $rc$([ $rc -eq 124 ] && echo ', over its time limit'))"; failures=$((failures + 1)); }
    note "$verdict  $name  $((SECONDS - start)) s"
    return $rc
}

note "gpu-check of $(cat "$here/COMMIT" 2>/dev/null || echo unknown) on $(hostname), $(date -u +%FT%TZ)"
nvidia-smi > "$results/nvidia-smi.txt" 2>&1 || note "WARN  nvidia-smi failed (see nvidia-smi.txt)"

# 1. stories260K greedy, cuda vs cpu.
prompt="Once upon a time"
step stories-cuda 60 "$cli" generate --device cuda -p "$prompt" -n 200 --temp 0 --seed 1 || true
step stories-cpu 60 "$cli" generate --device cpu -p "$prompt" -n 200 --temp 0 --seed 1 || true
step stories-compare 5 cmp "$results/stories-cuda.out" "$results/stories-cpu.out" || true

# 2. The suite's cases on the cuda backend (their display names carry the backend name).
step tests-cuda 180 "$tests" --filter '"cuda"' || true

# 3. 1B-preset logits, cuda vs cpu.
f16=$work/llama-3.2-1b-f16.gguf
[ -s "$f16" ] || step create-1b-f16 90 "$cli" create-model --family llama --preset llama-3.2-1b --dtype f16 --format gguf --seed 1 --out "$f16" --force || true
tokens="1 450 4996 17354 1701 432 4102 975 278 17366 11203 29889"
if [ -s "$f16" ]; then
    step logits-1b-cuda 60 "$cli" logits -m "$f16" --device cuda --tokens "$tokens" --all-positions -o "$results/logits-1b-cuda.f32" || true
    step logits-1b-cpu 90 "$cli" logits -m "$f16" --device cpu --tokens "$tokens" --all-positions -o "$results/logits-1b-cpu.f32" || true
    step logits-1b-compare 5 cmp "$results/logits-1b-cuda.f32" "$results/logits-1b-cpu.f32" || true
else
    note "SKIP  logits-1b (no model)"
fi

# 4. Decode and prefill speed on the GPU: F16, BF16, Q4_K_M.
bf16=$work/llama-3.2-1b-bf16.gguf
q4=$work/llama-3.2-1b-q4_k_m.gguf
[ -s "$bf16" ] || step create-1b-bf16 90 "$cli" create-model --family llama --preset llama-3.2-1b --dtype bf16 --format gguf --seed 1 --out "$bf16" --force || true
[ -s "$q4" ] || { [ -s "$f16" ] && step quantize-1b-q4_k_m 90 "$cli" quantize -m "$f16" --type Q4_K_M -o "$q4" --force; } || true
for model in "$f16" "$bf16" "$q4"; do
    name=bench-$(basename "$model" .gguf)
    if [ -s "$model" ]; then
        step "$name" 60 "$cli" bench --device cuda -m "$model" -p 128 -n 64 -r 3 --warmup-seconds 1 --json "$results/$name.json" || true
    else
        note "SKIP  $name (no model)"
    fi
done

note "$failures failure(s); results in $results"
exit $failures
