#!/bin/sh
# xpk workload for run lr0.001 of sweep tpu (1 of 3).
# Rendered by `deepdive sweep render sweeps/tpu.toml`; run it from the directory it
# was rendered in (xpk packs that directory into the image as --script-dir).
xpk workload create \
  --cluster tpu-cluster \
  --project proj \
  --zone us-west4-a \
  --workload tpu-lr0-001 \
  --tpu-type v5litepod-16 \
  --num-slices 1 \
  --base-docker-image python:3.11 \
  --script-dir . \
  --max-restarts 3 \
  --env MODEL_DIR=gs://bkt/sweeps/tpu/lr0.001 \
  --env DEEPDIVE_DISTRIBUTED=auto \
  --command 'pip install -e ".[tpu]" && deepdive train --gin_file runs/tpu/lr0.001/run.gin --gin.MODEL_DIR="\"$MODEL_DIR\""'
