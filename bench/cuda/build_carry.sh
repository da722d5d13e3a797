#!/usr/bin/env bash
# Builds (here, where Rust is) the release test binaries of hasten-cuda, the CUDA examples
# and the MNIST examples (run there with --backend cuda), strips them, and puts them in
# bench/cuda/bin/ next to run_on_device.sh, so that bench/cuda/ can be carried to a GPU
# machine without Rust.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=bench/cuda/bin
mkdir -p "$OUT"
tests=$(cargo test --release --no-run -p hasten-cuda --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
')
while read -r name exe; do
  [ -n "$name" ] && strip -o "$OUT/$name" "$exe"
done <<< "$tests"
bins="cuda_matmul cuda_bench mnist_mlp mnist_cnn"
cargo build --release -p hasten-examples $(printf -- '--bin %s ' $bins)
TARGET="${CARGO_TARGET_DIR:-target}"
for b in $bins; do strip -o "$OUT/$b" "$TARGET/release/$b"; done
ls -la "$OUT"
