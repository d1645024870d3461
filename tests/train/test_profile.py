"""``train.profile_steps`` writes a JAX profiler trace of the chosen steps, and only of them."""

import gzip
import json

from framework.core import config
from framework.train import loop as train
from tests.train.helpers import bindings


def test_profile_window_writes_a_trace_of_the_train_step(tmp_path):
    model_dir = tmp_path / "run"
    parsed = config.parse(["base/train.gin"], bindings(
        model_dir, "TRAIN_STEPS = 4", "CHECKPOINT_EVERY = 100", "train.profile_steps = (1, 2)",
        "sharding.MeshConfig.num_devices = 1", "sharding.MeshConfig.shape = (1, 1, 1)"))  # fmt: skip
    train.train(parsed_config=parsed)
    (trace,) = (model_dir / "profile").rglob("*.trace.json.gz")
    events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    modules = {e.get("args", {}).get("hlo_module") for e in events if e.get("ph") == "X"}
    assert "jit_step" in modules  # the compiled train step ran inside the window
