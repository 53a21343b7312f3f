#!/usr/bin/env bash
# Side by side with llama.cpp: runs llama.cpp's llama-bench and this engine's `bench` alternately on
# the same GGUF files with the same thread counts, and prints each program's tokens/s as a range
# over the rounds and the ratio of the two (ours / llama.cpp), prefill (pp) and decode (tg).
#
#   scripts/bench-vs-llama.sh [options] PATH_TO_LLAMA_BENCH
#
# Options (lists are space- or comma-separated):
#   --models LIST    what to measure (default: "f16 bf16 f32"). f16, bf16 and f32 are the
#                    Llama-3.2-1B-shaped random model of that type, created in --model-dir when
#                    absent; anything else is the path of a GGUF file (a Q4_K_M or Q8_0 made with
#                    llama-quantize, say).
#   --threads LIST   thread counts (default: "1 2")
#   --rounds N       alternations of the two programs per model and thread count (default: 3)
#   -p N, -n N, -r N prompt tokens, decode steps and repetitions per run (default: 128, 64, 3)
#   --model-dir DIR  where the 1B models are created (default: $TMPDIR or /tmp)
#   --ours CMD       how to run this engine (default: the Release build of src/Cli, built first)
#   --ours-args STR  extra arguments for this engine's bench (e.g. "--mmap 1")
#   --llama-args STR extra arguments for llama-bench (e.g. "-mmp 0")
#
# Both programs share the machine with whatever else runs on it: the load average is printed at
# the start and the end, and only ratios from one sitting mean anything. Never run by tests or CI.
set -euo pipefail

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

models="f16 bf16 f32"; threads="1 2"; rounds=3; prompt=128; steps=64; reps=3
model_dir="${TMPDIR:-/tmp}"; ours=""; ours_args=""; llama_args=""; llama_bench=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --models) models="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        -p) prompt="$2"; shift 2 ;;
        -n) steps="$2"; shift 2 ;;
        -r) reps="$2"; shift 2 ;;
        --model-dir) model_dir="$2"; shift 2 ;;
        --ours) ours="$2"; shift 2 ;;
        --ours-args) ours_args="$2"; shift 2 ;;
        --llama-args) llama_args="$2"; shift 2 ;;
        -h|--help) usage ;;
        -*) echo "unknown option $1" >&2; usage ;;
        *) llama_bench="$1"; shift ;;
    esac
done
[[ -n "$llama_bench" ]] || usage
[[ -x "$llama_bench" ]] || { echo "$llama_bench is not an executable llama-bench" >&2; exit 2; }
command -v jq >/dev/null || { echo "this script needs jq to read both programs' JSON" >&2; exit 2; }
models="${models//,/ }"; threads="${threads//,/ }"

repo="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "$ours" ]]; then
    echo "building src/Cli (Release)" >&2
    dotnet build "$repo/src/Cli" -c Release -v quiet -nologo >&2
    ours="dotnet $repo/src/Cli/bin/Release/net10.0/ilgpullm.dll"
fi

# The model files: the 1B preset by type, created once, or paths as given.
files=()
for entry in $models; do
    case "$entry" in
        f16|bf16|f32)
            file="$model_dir/l1b-$entry.gguf"
            if [[ ! -f "$file" ]]; then
                echo "creating $file" >&2
                $ours create-model --family llama --preset llama-3.2-1b --dtype "$entry" --format gguf --seed 1 --out "$file" >&2
            fi
            files+=("$file") ;;
        *)
            [[ -f "$entry" ]] || { echo "$entry: no such model file" >&2; exit 2; }
            files+=("$entry") ;;
    esac
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime; }
echo "load average at the start: $(load)" >&2

# One row per model and thread count: both programs' pp and tg t/s of every round, our memory ratio.
rows="$work/rows.tsv"
for file in "${files[@]}"; do
    for t in $threads; do
        for ((round = 1; round <= rounds; round++)); do
            # Alternate which program goes first, so neither always runs after the other's heat.
            order=(llama ours); (( round % 2 == 0 )) && order=(ours llama)
            for who in "${order[@]}"; do
                echo "$(basename "$file"), $t thread(s), round $round of $rounds: $who (load $(load))" >&2
                if [[ "$who" == llama ]]; then
                    # shellcheck disable=SC2086
                    "$llama_bench" -m "$file" -t "$t" -p "$prompt" -n "$steps" -r "$reps" -o json $llama_args > "$work/llama.json" 2>"$work/llama.err" \
                        || { cat "$work/llama.err" >&2; exit 1; }
                    llama_pp=$(jq '[.[] | select(.n_prompt > 0 and .n_gen == 0) | .avg_ts][0] // 0' "$work/llama.json")
                    llama_tg=$(jq '[.[] | select(.n_gen > 0 and .n_prompt == 0) | .avg_ts][0] // 0' "$work/llama.json")
                else
                    # shellcheck disable=SC2086
                    $ours bench -m "$file" --device cpu -t "$t" -p "$prompt" -n "$steps" -r "$reps" --json "$work/ours.json" $ours_args \
                        > "$work/ours.out" 2>"$work/ours.err" || { cat "$work/ours.err" >&2; exit 1; }
                    ours_pp=$(jq '[.results[] | select(.kind == "pp") | .avg_ts][0] // 0' "$work/ours.json")
                    ours_tg=$(jq '[.results[] | select(.kind == "tg") | .avg_ts][0] // 0' "$work/ours.json")
                    ours_mem=$(jq '[.results[] | select(.kind == "tg") | .vs_memory][0] // 0' "$work/ours.json")
                fi
            done
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(basename "$file")" "$t" "$llama_pp" "$ours_pp" "$llama_tg" "$ours_tg" "$ours_mem" >> "$rows"
            echo "  llama.cpp pp $llama_pp tg $llama_tg; ours pp $ours_pp tg $ours_tg (vs memory $ours_mem)" >&2
        done
    done
done

echo "load average at the end: $(load)" >&2
echo
echo "pp$prompt and tg$steps, tokens/s as the range over $rounds alternating rounds (each the mean of $reps runs);"
echo "ratio = ours / llama.cpp within each round, as a range; vs memory = our decode's weight bytes/s over the memory"
echo "bandwidth bench measured before it. Load average $(load) at the end."
echo
echo "| model | threads | llama.cpp pp$prompt | ours pp$prompt | pp ratio | llama.cpp tg$steps | ours tg$steps | tg ratio | ours tg vs memory |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '
    function range(lo, hi, fmt) { return sprintf(fmt, lo) (sprintf(fmt, lo) == sprintf(fmt, hi) ? "" : "–" sprintf(fmt, hi)) }
    function keep(key, name, v) { if (!((key, name, "n") in s) || v < s[key, name, "lo"]) s[key, name, "lo"] = v;
                                   if (!((key, name, "n") in s) || v > s[key, name, "hi"]) s[key, name, "hi"] = v; s[key, name, "n"] = 1 }
    {
        key = $1 "\t" $2; if (!(key in seen)) { seen[key] = 1; order[++count] = key }
        keep(key, "lpp", $3); keep(key, "opp", $4); keep(key, "ltg", $5); keep(key, "otg", $6); keep(key, "mem", 100 * $7)
        if ($3 > 0) keep(key, "rpp", $4 / $3); if ($5 > 0) keep(key, "rtg", $6 / $5)
    }
    END {
        for (i = 1; i <= count; i++) {
            key = order[i]; split(key, part, "\t")
            printf "| %s | %s | %s | %s | %s× | %s | %s | %s× | %s |\n", part[1], part[2],
                range(s[key, "lpp", "lo"], s[key, "lpp", "hi"], "%.1f"), range(s[key, "opp", "lo"], s[key, "opp", "hi"], "%.1f"),
                range(s[key, "rpp", "lo"], s[key, "rpp", "hi"], "%.2f"),
                range(s[key, "ltg", "lo"], s[key, "ltg", "hi"], "%.2f"), range(s[key, "otg", "lo"], s[key, "otg", "hi"], "%.2f"),
                range(s[key, "rtg", "lo"], s[key, "rtg", "hi"], "%.2f"),
                (s[key, "mem", "hi"] > 0 ? range(s[key, "mem", "lo"], s[key, "mem", "hi"], "%.0f") " %" : "not measured")
        }
    }' "$rows"
