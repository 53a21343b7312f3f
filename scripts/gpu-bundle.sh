#!/usr/bin/env bash
# Makes the bundle scripts/gpu-check.sh runs on a machine with an NVIDIA GPU and no .NET SDK:
# self-contained publishes of the CLI and of the test assembly (its own console runner, see
# tests/Support/ConsoleRunner.cs), the check script, packed as one tar.gz.
#   scripts/gpu-bundle.sh [OUTPUT.tar.gz]        (default: artifacts/gpu-check-linux-x64.tar.gz)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
archive=${1:-$root/artifacts/gpu-check-linux-x64.tar.gz}
runtime=${RUNTIME_ID:-linux-x64}
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
bundle=$staging/gpu-check
mkdir -p "$bundle" "$(dirname "$archive")"

dotnet publish "$root/src/Cli/IlgpuLlm.Cli.csproj" -c Release -r "$runtime" --self-contained -o "$bundle/cli" -p:UseAppHost=true
dotnet publish "$root/tests/IlgpuLlm.Tests.csproj" -c Release -r "$runtime" --self-contained -o "$bundle/tests" -p:UseAppHost=true
cp "$root/scripts/gpu-check.sh" "$bundle/"
git -C "$root" rev-parse HEAD > "$bundle/COMMIT" 2>/dev/null || echo unknown > "$bundle/COMMIT"
tar -C "$staging" -czf "$archive" gpu-check
echo "bundle: $archive ($(du -h "$archive" | cut -f1)); on the GPU machine: tar xzf $(basename "$archive") && gpu-check/gpu-check.sh"
