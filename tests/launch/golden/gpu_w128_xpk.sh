#!/bin/sh
# xpk workload for run w128 of sweep gpu (2 of 2).
# Rendered by `deepdive sweep render sweeps/gpu.toml`; run it from the directory it
# was rendered in (xpk packs that directory into the image as --script-dir).
xpk workload create \
  --cluster gpu-cluster \
  --zone us-central1-b \
  --workload gpu-w128 \
  --device-type h100-80gb-8 \
  --num-nodes 2 \
  --docker-image us-docker.pkg.dev/proj/deepdive:latest \
  --env MODEL_DIR=s3://bkt/sweeps/gpu/w128 \
  --env DEEPDIVE_DISTRIBUTED=auto \
  --command 'deepdive train --gin_file runs/gpu/w128/run.gin --gin.MODEL_DIR="\"$MODEL_DIR\""'
