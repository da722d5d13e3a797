#!/usr/bin/env bash
# Every GPU check of the CUDA backend, on a GPU machine without Rust (it has CUDA, PyTorch and
# JAX). Run from the folder the binaries were carried into (see README.md):
#   bin/{plan,nvrtc_kernels,emulated,gpu_ops,gpu_training}  stripped test binaries of hasten-cuda
#   bin/{cuda_matmul,cuda_bench,mnist_mlp,mnist_cnn}  stripped example binaries
#   ../../data/mnist                               MNIST (or set HASTEN_MNIST_DIR)
#   peers.py                                       PyTorch eager and torch.compile timings
# Prints one block per check and the benchmark table; exits non-zero if any check failed.
set -uo pipefail
cd "$(dirname "$0")"
BIN="${BIN:-bin}"
status=0
# NVRTC: the CUDA toolkit's, else the nvidia-cuda-nvrtc wheel PyTorch ships with.
if [ -z "${HASTEN_NVRTC:-}" ]; then
  HASTEN_NVRTC="$(python3 - <<'PY' 2>/dev/null
import glob, os, site
dirs = site.getsitepackages() + ["/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu"]
hits = [p for d in dirs for p in glob.glob(os.path.join(d, "**", "libnvrtc.so*"), recursive=True)
        if "builtins" not in p and ".alt." not in p]
print(sorted(hits)[-1] if hits else "")
PY
)"
  export HASTEN_NVRTC
fi
echo "== device"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
echo "== NVRTC: ${HASTEN_NVRTC:-on the loader path}"
check() {
  local name="$1"; shift
  echo "== $name"
  if ! timeout 600 "$@"; then echo "FAILED: $name"; status=1; fi
}
# The skipping tests must not skip here: a GPU is present, so a skip is a failure.
export HASTEN_REQUIRE_GPU=1
check "plan (device-free)" "$BIN/plan"
check "NVRTC compile of every kernel" "$BIN/nvrtc_kernels"
check "kernels emulated on the host vs CPU (skips without c++)" "$BIN/emulated"
check "every op forward+gradient vs CPU" "$BIN/gpu_ops" --test-threads 1
check "100 steps MLP/CNN vs CPU, warm step allocates nothing" "$BIN/gpu_training" --test-threads 1
check "SGEMM 4096³ vs CPU, TFLOP/s" "$BIN/cuda_matmul"
check "SGEMM 4096³ with TF32" "$BIN/cuda_matmul" --tf32
# The seed's two models trained on the GPU must reach what the CPU backend reaches with the
# same seed (MLP 97.8 %, CNN 98.5 % after 10 epochs on this VM); the floor leaves room for a
# different summation order.
export HASTEN_MNIST_DIR="${HASTEN_MNIST_DIR:-$(cd ../.. && pwd)/data/mnist}"
accuracy() {
  local name="$1" floor="$2"; shift 2
  echo "== $name"
  local out; out="$(timeout 600 "$@" --backend cuda --epoch-lines | tee /dev/stderr)" || { echo "FAILED: $name"; status=1; return; }
  python3 -c 'import re,sys; a=float(re.findall(r"test accuracy ([0-9.]+)", sys.argv[1])[-1]); print("test accuracy", a, "floor", sys.argv[2]); sys.exit(a < float(sys.argv[2]))' "$out" "$floor" ||
    { echo "FAILED: $name"; status=1; }
}
accuracy "reference MLP, 10 epochs on the GPU" 0.975 "$BIN/mnist_mlp" --epochs 10
accuracy "reference CNN, 10 epochs on the GPU" 0.982 "$BIN/mnist_cnn" --epochs 10
echo "== benchmark: hasten"
"$BIN/cuda_bench" | tee hasten.txt || status=1
echo "== benchmark: PyTorch eager and torch.compile(mode=reduce-overhead)"
python3 peers.py | tee peers.txt || status=1
echo "== table (s/epoch, 60 000 samples)"
python3 - <<'PY'
rows = {}
for f in ("hasten.txt", "peers.txt"):
    try:
        for line in open(f):
            p = line.split()
            if len(p) == 5 and p[4] == "s/epoch":
                rows.setdefault((p[1], p[2]), {})[p[0]] = float(p[3])
    except FileNotFoundError:
        pass
print(f"{'model':6} {'batch':6} {'hasten':>9} {'eager':>9} {'compile':>9} {'x eager':>8} {'x compile':>9}")
for (model, batch), r in sorted(rows.items()):
    h, e, c = r.get("hasten"), r.get("torch-eager"), r.get("torch-compile")
    fmt = lambda v: f"{v:9.3f}" if v else f"{'-':>9}"
    ratio = lambda a, b: f"{b / a:8.1f}" if a and b else f"{'-':>8}"
    print(f"{model:6} {batch:6} {fmt(h)} {fmt(e)} {fmt(c)} {ratio(h, e)} {ratio(h, c):>9}")
PY
exit $status
