#!/usr/bin/env bash
# Side-by-side decode and prefill speed of this engine's `bench` and llama.cpp's `llama-bench` on
# the same GGUF files, the two programs alternating in one sitting so that both see the same
# machine. Manual measurement only (never from tests or CI).
#
#   bench/scripts/side-by-side.sh [-r ROUNDS] [-t "1 2"] [-p 128] [-n 64] MODEL.gguf...
#
# LLAMA_CPP names the folder of llama-bench (default: ../shared/peers/llama.cpp beside the
# repository). Each round runs every model at every thread count, ours first, then llama.cpp's,
# each with -r 2; the load average is printed before each run, since on a shared machine the
# ratio of one sitting means more than either program's number, and each program's peak resident
# memory after it (both map the file, so this counts the weights they touched). Quantized models (Q4_K_M, Q8_0
# from llama-quantize or `ilgpullm quantize`) and f16/f32 ones alike.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
llama="${LLAMA_CPP:-$root/../shared/peers/llama.cpp}"
rounds=3 threads="1 2" prompt=128 gen=64
while getopts "r:t:p:n:" option; do
  case "$option" in
    r) rounds="$OPTARG" ;; t) threads="$OPTARG" ;; p) prompt="$OPTARG" ;; n) gen="$OPTARG" ;;
    *) echo "usage: $0 [-r rounds] [-t \"threads...\"] [-p prompt] [-n gen] model.gguf..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "$#" -gt 0 ] || { echo "usage: $0 [-r rounds] [-t \"threads...\"] [-p prompt] [-n gen] model.gguf..." >&2; exit 2; }
[ -x "$llama/llama-bench" ] || { echo "no llama-bench in $llama (set LLAMA_CPP)" >&2; exit 1; }

dotnet build "$root/src/Cli" -c Release -v quiet -nologo >/dev/null
ours="$root/src/Cli/bin/Release/net10.0/ilgpullm.dll"

for round in $(seq 1 "$rounds"); do
  for model in "$@"; do
    for t in $threads; do
      echo "## round $round, $(basename "$model"), $t thread(s), load average $(cut -d' ' -f1-3 /proc/loadavg)"
      /usr/bin/time -f "#   peak RSS %M KiB" dotnet "$ours" bench -m "$model" -p "$prompt" -n "$gen" -t "$t" -r 2 2>&1 | grep -E '^\| (llama|qwen|gemma)|peak RSS'
      echo "#   llama.cpp, load average $(cut -d' ' -f1-3 /proc/loadavg)"
      LD_LIBRARY_PATH="$llama" /usr/bin/time -f "#   peak RSS %M KiB" "$llama/llama-bench" -m "$model" -p "$prompt" -n "$gen" -t "$t" -r 2 2>&1 | grep -E '^\| (llama|qwen|gemma)|peak RSS'
    done
  done
done
