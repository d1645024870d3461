"""Stand-in for ``deepdive train`` in launcher tests (the real trainer has its own tests).

Same command line (``--gin_file RUN_GIN --gin.MODEL_DIR="DIR"``) and the same MODEL_DIR contract:
``metrics.jsonl`` lines, ``checkpoints/<step>/`` every 2 steps, ``COMPLETED`` at TRAIN_STEPS, and
resumption from the newest checkpoint. The loss is a known function of the learning rate and the
step, so tests can check the results table against hand-computed numbers.
"""

import json
import os
import re
import sys
import time
from pathlib import Path


def value(text: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)} = (.+)$", text, re.MULTILINE)
    if match is None:
        sys.exit(f"fake_train: {name} not bound")
    return match.group(1).strip()


def main() -> None:
    args = sys.argv[1:]
    gin_file = Path(args[args.index("--gin_file") + 1])
    model_dir = Path(
        json.loads(next(a for a in args if a.startswith("--gin.MODEL_DIR=")).split("=", 1)[1])
    )
    text = gin_file.read_text()
    steps = int(value(text, "TRAIN_STEPS"))
    lr = float(value(text, "LEARNING_RATE"))
    step_s = float(os.environ.get("FAKE_STEP_S", "0.05"))
    model_dir.mkdir(parents=True, exist_ok=True)
    ckpts = model_dir / "checkpoints"
    done = [int(p.name) for p in ckpts.iterdir()] if ckpts.exists() else []
    start = max(done, default=0)
    (model_dir / "config.gin").write_text(text)
    with open(model_dir / "metrics.jsonl", "a") as metrics:
        for step in range(start + 1, steps + 1):
            time.sleep(step_s)
            record = {"step": step, "loss": 10.0 * lr + 1.0 / step, "tokens_per_s": 1000.0 + step}
            if step % 2 == 0:
                record["val_loss"] = 20.0 * lr + 1.0 / step
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            if step % 2 == 0:
                (ckpts / str(step)).mkdir(parents=True, exist_ok=True)
    (model_dir / "COMPLETED").write_text("")


if __name__ == "__main__":
    main()
