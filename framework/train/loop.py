"""The training loop: ``train(...)`` is the top-level gin configurable of ``deepdive train``.

What one run does, in order:

1. builds the mesh (``sharding.MeshConfig``) and the abstract model, derives every parameter's
   and optimizer slot's sharding from the logical-axis rules, and initialises the state directly
   into those shardings (one jitted init);
2. resumes from the newest checkpoint in ``MODEL_DIR/checkpoints`` when there is one (params,
   optimizer state, step, RNG key and the input iterator's position), else starts at step 0;
3. writes ``config.gin``, ``run_manifest.json``, ``model.json`` and ``tokenizer/`` at the start
   and ``operative_config.gin`` after the first step;
4. runs ONE jitted step per batch (state and batch shardings given; the state buffers donated),
   logs to ``metrics.jsonl`` / TensorBoard / the progress bar every ``log_every`` steps,
   evaluates every ``eval_every`` steps, checkpoints every ``checkpoint_every`` steps
   (asynchronously; only after checking every step since the last check was finite);
5. writes ``COMPLETED`` and the plot when ``train_steps`` is reached.

A non-finite loss or gradient norm stops the run (exit code 3 from the command) without saving,
so the last good checkpoint stays the newest. SIGTERM or Ctrl-C saves a checkpoint of the last
finished step, then exits. Determinism: the data order is a function of (seed, step); XLA on
CPU is deterministic, so a killed-and-resumed run logs bit-identical losses.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import gin

from framework.core import paths
from framework.core.errors import ConfigError, InputError
from framework.models import backend, layers
from framework.train import input as data_lib
from framework.train import lease, sharding
from framework.train.program import build_program
from framework.train.step import DEFAULT_DECAY_EXCLUDE


class NonFiniteError(RuntimeError):
    """The loss or gradient norm became NaN/inf; the newest checkpoint is the last good one."""


class Stopped(RuntimeError):
    """A SIGTERM / SIGINT stopped the run after saving a checkpoint."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


class _SignalFlag:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (a second SIGINT raises
    KeyboardInterrupt at once)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class _ProfileWindow:
    """``train.profile_steps = (first, count)``: a JAX profiler trace of steps
    ``first .. first + count - 1`` into MODEL_DIR/profile (TensorBoard / Perfetto), as MaxText's
    profiler steps. Off by default."""

    def __init__(self, steps: tuple[int, int] | None, directory: Any):
        self.first, self.count = (int(steps[0]), int(steps[1])) if steps else (-1, 0)
        self.directory, self.active = directory, False

    def before(self, step: int) -> None:
        import jax

        if self.count and step == self.first and not self.active:
            jax.profiler.start_trace(str(self.directory), create_perfetto_trace=True)
            self.active = True

    def after(self, step: int, state: Any) -> None:
        import jax

        if self.active and step >= self.first + self.count:
            jax.block_until_ready(state)
            jax.profiler.stop_trace()
            self.active = False


def _model_name(model_config: Any) -> str:
    from framework.train import checkpoint

    try:
        return checkpoint.plugin_name_of(model_config)
    except Exception:  # noqa: BLE001 - an unregistered config still trains; model.json says so
        return type(model_config).__name__


def check_shapes(model_config: Any, batch_size: int, seq_len: int, grad_accum_steps: int,
                 divisor: int, process_count: int = 1) -> None:  # fmt: skip
    """ConfigError (numbers in the message) when batch/sequence do not fit the model or mesh."""
    max_len = getattr(model_config, "max_seq_len", None)
    if max_len is not None and seq_len > max_len:
        raise ConfigError(
            f"train.seq_len {seq_len} is longer than the model's context max_seq_len {max_len}"
        )
    if batch_size % grad_accum_steps:
        raise ConfigError(
            f"train.batch_size {batch_size} is not divisible by grad_accum_steps {grad_accum_steps}"
        )
    micro = batch_size // grad_accum_steps
    if micro % divisor:
        raise ConfigError(
            f"batch size {micro} per micro-step (batch {batch_size} / accumulation "
            f"{grad_accum_steps}) is not divisible by the {divisor} ways the data axes split it"
        )
    if batch_size % process_count:
        raise ConfigError(
            f"train.batch_size {batch_size} is not divisible by {process_count} processes"
        )


def _restore_any_layout(
    mngr,
    step,
    model_dir,
    model,
    abstract_state,
    program,
    rules,
    seed,
    make_optimizer,
    params_only=False,
):
    """Restore checkpoint ``step`` onto ``abstract_state`` (sharded ShapeDtypeStructs), whichever
    layout its blocks were saved in (per layer, or stacked by scanned layers): a run started
    before ``scan_layers`` became the default resumes, converted once, and saves the new layout."""
    import dataclasses

    import jax
    from flax import nnx

    from framework.train import checkpoint

    stored = checkpoint.stored_blocks_layout(model_dir, step)
    wanted = checkpoint.STACKED if getattr(model, "scan_layers", False) else checkpoint.PER_LAYER
    opt_state = None if params_only else abstract_state["opt_state"]
    if stored is None or stored == wanted or not dataclasses.is_dataclass(model):
        return checkpoint.restore(mngr, step, abstract_state["params"], opt_state)
    as_saved = dataclasses.replace(model, scan_layers=stored == checkpoint.STACKED)
    abstract = nnx.eval_shape(lambda: layers.build_unsharded(as_saved, nnx.Rngs(seed)))
    saved_params = nnx.split(abstract, nnx.Param, ...)[1]
    saved_state = {"params": saved_params,
                   "opt_state": jax.eval_shape(make_optimizer(saved_params).init, saved_params)}  # fmt: skip
    shardings = sharding.state_shardings(
        {**saved_state, "step": abstract_state["step"]}, program.mesh, rules
    )
    saved_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), saved_state,
        {"params": shardings["params"], "opt_state": shardings["opt_state"]},
    )  # fmt: skip
    params, opt_state, meta = checkpoint.restore(
        mngr, step, saved_state["params"], None if params_only else saved_state["opt_state"]
    )
    print(f"checkpoint {step}: blocks saved {stored.replace('_', ' ')}, "
          f"converted to {wanted.replace('_', ' ')}")  # fmt: skip
    return (
        checkpoint.relayout_blocks(params, abstract_state["params"]),
        None if params_only else checkpoint.relayout_blocks(opt_state, abstract_state["opt_state"]),
        meta,
    )


def _initial_state_from(
    init_from, model, program, rules, seed, make_optimizer, abstract_state, state_sharding
):
    """The train state of a run that starts from ``init_from``'s newest checkpoint: its
    parameters (in whichever block layout they were saved), a fresh optimizer, step 0."""
    import jax
    import jax.numpy as jnp

    from framework.train import checkpoint

    source = paths.as_path(init_from)
    step = checkpoint.latest_step(source) if source.is_dir() else None
    if step is None:
        raise InputError(f"train.init_from {init_from}: no checkpoint to start from")
    abstract_with_sharding = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state, state_sharding,
    )  # fmt: skip
    mngr = checkpoint.manager(source, asynchronous=False)
    try:
        params = _restore_any_layout(
            mngr, step, source, model, abstract_with_sharding, program, rules, seed,
            make_optimizer, params_only=True,
        )[0]  # fmt: skip
    except Exception as error:  # noqa: BLE001 - say which run and why, in one line
        raise InputError(
            f"train.init_from {init_from}: checkpoint {step} does not fit this model "
            f"({checkpoint.describe_failure(error)}); use the model it was trained with "
            "(models.from_run reads it from the run)"
        ) from None
    finally:
        mngr.close()
    print(f"initialised from {init_from} (checkpoint {step})", flush=True)
    init_opt = jax.jit(program.optimizer.init, out_shardings=state_sharding["opt_state"])
    return {
        "params": params,
        "opt_state": init_opt(params),
        "step": jax.device_put(jnp.zeros((), jnp.int32), program.replicated),
    }


@gin.configurable("train", denylist=["parsed_config", "compile_for"])
def train(
    model_dir: str = gin.REQUIRED,
    model: Any = gin.REQUIRED,
    data: Any = gin.REQUIRED,
    train_steps: int = 1000,
    batch_size: int = 8,
    seq_len: int = 256,
    learning_rate: float = 3e-4,
    warmup_steps: int = 100,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.1,
    decay_steps: int | None = None,
    weight_decay: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    grad_clip: float | None = 1.0,
    grad_accum_steps: int = 1,
    decay_exclude: str = DEFAULT_DECAY_EXCLUDE,
    seed: int = 0,
    log_every: int = 10,
    eval_every: int = 250,
    eval_batches: int = 20,
    checkpoint_every: int = 500,
    keep_checkpoints: int = 3,
    mesh: sharding.MeshConfig | None = None,
    logical_axis_rules: Any = sharding.FSDP,
    progress: bool = True,
    profile_steps: tuple[int, int] | None = None,
    parsed_config: Any = None,
    compile_for: Any = None,
    init_from: str | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``data`` for ``train_steps`` steps into ``model_dir`` (module
    docstring). Returns the last logged metrics.

    ``init_from``: another run directory (local or a bucket) whose newest checkpoint gives the
    starting parameters (fine-tuning: SFT from a pretrained or converted model); the optimizer
    and the step start afresh. It is read only when ``model_dir`` has no checkpoint yet, so a
    resumed fine-tuning run continues from its own.

    ``compile_for`` (``deepdive compile``; a :class:`~framework.train.topologies.CompileTarget`):
    build the same program over the target's devices, compile it ahead of time and return its
    report instead of training; nothing is read from or written to ``model_dir`` or ``data``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from framework.core import config, distributed
    from framework.train import checkpoint, evaluate, metrics
    from framework.train import step as train_state

    model_dir = paths.as_path(model_dir)
    mesh_config = mesh or sharding.MeshConfig()
    rules = tuple((str(k), v) for k, v in logical_axis_rules)
    mesh_obj = mesh_config.make(None if compile_for is None else compile_for.devices)
    process_index, process_count = jax.process_index(), jax.process_count()
    if compile_for is not None:
        process_count = len({d.process_index for d in compile_for.devices})
    is_main = process_index == 0
    divisor = sharding.batch_divisor(mesh_obj, rules)
    check_shapes(model, batch_size, seq_len, grad_accum_steps, divisor, process_count)
    name = _model_name(model)

    # -- abstract model, shardings, optimizer, compiled steps --------------------------------
    schedule_fn = train_state.learning_rate_schedule(
        learning_rate, train_steps, warmup_steps, schedule, min_lr_ratio, decay_steps
    )

    def make_optimizer(params):  # the weight-decay mask depends on the parameters' names
        return train_state.make_optimizer(
            schedule_fn, params, weight_decay, b1, b2, eps, grad_clip, decay_exclude
        )

    program = build_program(
        model,
        mesh_obj,
        rules,
        seed=seed,
        optimizer=make_optimizer,
        grad_accum_steps=grad_accum_steps,
    )
    abstract_state, state_sharding = program.abstract_state, program.state_sharding
    abstract_params = abstract_state["params"]
    replicated, batch_shard = program.replicated, program.batch_sharding
    step_fn, eval_fn = program.train_step, program.eval_step
    devices = list(mesh_obj.devices.flat)
    if compile_for is not None:
        from framework.train import aot

        return aot.compile_report(
            program,
            topology=compile_for.name,
            chips=compile_for.chips,
            hbm_bytes_per_chip=compile_for.hbm_bytes_per_chip,
            batch_size=batch_size,
            seq_len=seq_len,
            packed=bool(getattr(data, "packed", False)),
        )

    # one writer per run directory: a second `deepdive train` on it stops here (lease.py)
    held = lease.acquire(model_dir).start_heartbeat() if is_main else None
    try:
        # -- resume or start ---------------------------------------------------------------------
        mngr = checkpoint.manager(model_dir, max_to_keep=keep_checkpoints)
        latest = mngr.latest_step()
        data_iter = data.train_iterator(
            batch_size, seq_len, seed, process_index, process_count,
            vocab_size=getattr(model, "vocab_size", None),
        )  # fmt: skip
        rng = jax.random.key(seed)
        if latest is not None:
            abstract_with_sharding = jax.tree.map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                abstract_state, state_sharding,
            )  # fmt: skip
            while True:  # the newest checkpoint that restores; damaged ones are moved aside
                try:
                    params, opt_state, meta = _restore_any_layout(
                        mngr, latest, model_dir, model, abstract_with_sharding, program, rules,
                        seed, make_optimizer,
                    )  # fmt: skip
                    break
                except Exception as error:  # noqa: BLE001 - damaged, or not this model's
                    if checkpoint.readable(model_dir, latest):
                        raise InputError(
                            f"{model_dir}: checkpoint {latest} does not fit this model "
                            f"({checkpoint.describe_failure(error)}); train into another MODEL_DIR "
                            "or restore the configuration it was trained with"
                        ) from None
                    mngr.close()
                    reason = checkpoint.describe_failure(error)
                    aside = checkpoint.move_aside(model_dir, latest) if is_main else "(process 0)"
                    mngr = checkpoint.manager(model_dir, max_to_keep=keep_checkpoints)
                    previous = mngr.latest_step()
                    print(f"checkpoint {latest} is damaged ({reason}); moved aside to {aside}; "
                          + (f"resuming from checkpoint {previous}" if previous is not None
                             else "no older checkpoint: starting from step 0"), flush=True)  # fmt: skip
                    latest = previous
                    if latest is None:
                        break
        if latest is not None:
            start_step = int(meta["step"])
            state = {
                "params": params,
                "opt_state": opt_state,
                "step": jax.device_put(jnp.asarray(start_step, jnp.int32), replicated),
            }
            if "rng" in meta:
                rng = jax.random.wrap_key_data(jnp.asarray(meta["rng"], jnp.uint32))
            if meta.get("data") is not None:
                data_iter.set_state(meta["data"])
        elif init_from:
            start_step = 0
            state = _initial_state_from(
                init_from, model, program, rules, seed, make_optimizer, abstract_state,
                state_sharding,
            )  # fmt: skip
        else:
            start_step = 0
            state = program.init_state(rng)
        if start_step >= train_steps and (model_dir / "COMPLETED").exists():
            mngr.close()
            if is_main:
                print(f"{model_dir}: already trained to step {start_step} (COMPLETED)", flush=True)
            return {"step": start_step}

        # -- run files ---------------------------------------------------------------------------
        spec = distributed.ClusterSpec(None, process_count, process_index, "jax")
        if is_main:
            model_dir.mkdir(parents=True, exist_ok=True)
            if parsed_config is not None:
                config.write_run_files(
                    model_dir, parsed_config,
                    mesh={k: int(v) for k, v in mesh_obj.shape.items()},
                    logical_axis_rules=[list(r) for r in rules], model_plugin=name,
                    devices=jax.device_count(), processes=process_count, resumed_from=latest,
                )  # fmt: skip
            checkpoint.write_model_json(model_dir, name, model)
            if getattr(data, "tokenizer", None) is not None:
                checkpoint.save_tokenizer(data.tokenizer, model_dir)
            elif getattr(data, "tokenizer_path", None):
                checkpoint.copy_tokenizer(data.tokenizer_path, model_dir)
            if hasattr(data, "write_run_files"):  # e.g. chat.json, rejected records
                data.write_run_files(model_dir)
            print(distributed.banner(mesh_obj, spec), flush=True)
            n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_params))
            print(
                f"model {name}: {n_params:,} parameters; data: {data.describe()}; "
                f"batch {batch_size} x seq {seq_len}; steps {start_step}->{train_steps}"
                + (f" (resumed from checkpoint {latest})" if latest is not None else ""),
                flush=True,
            )
            print(f"kernels: {backend.describe(devices)}", flush=True)

        flops_per_token = metrics.model_flops_per_token(model, seq_len)
        peak, _peak_source = metrics.peak_flops_per_device()
        writer = metrics.MetricsWriter(model_dir, resume_step=start_step, enabled=is_main)
        bar = metrics.Progress(train_steps, start_step, enabled=is_main and progress)
        val_batches = None
        bytes_per_token = data.bytes_per_token() if eval_every else None

        def global_batch(local: Any) -> Any:  # int32[B, T+1], or a packed batch's dict of them
            return jax.tree.map(
                lambda rows: jax.make_array_from_process_local_data(
                    batch_shard, rows, (batch_size, rows.shape[1])
                ),
                local,
            )

        def run_eval(params) -> dict[str, Any]:
            nonlocal val_batches
            if val_batches is None:
                local = data.eval_batches(
                    batch_size, seq_len, eval_batches, process_index, process_count,
                    vocab_size=getattr(model, "vocab_size", None),
                )  # fmt: skip
                val_batches = [global_batch(b) for b in local]
            return evaluate.evaluate(eval_fn, params, val_batches, bytes_per_token)

        def save(step: int, force: bool = False) -> None:
            meta = {
                "step": step,
                "rng": np.asarray(jax.random.key_data(rng)).tolist(),
                "data": data_iter.get_state(),
            }
            checkpoint.save(mngr, step, state["params"], meta, state["opt_state"], force=force)

        pending: list[tuple[int, dict]] = []  # (step, device metrics) not yet checked on the host
        last: dict[str, Any] = {"step": start_step}
        tokens_per_step = batch_size * seq_len
        window_start, window_steps = time.perf_counter(), 0

        def flush(step: int) -> dict[str, Any]:
            """Fetch pending metrics, stop on a non-finite one, return the newest row."""
            nonlocal pending
            fetched = [(s, jax.device_get(m)) for s, m in pending]
            pending = []
            for s, m in fetched:
                loss, grad_norm = float(m["loss"]), float(m["grad_norm"])
                if not (np.isfinite(loss) and np.isfinite(grad_norm)):
                    raise NonFiniteError(
                        f"non-finite {'loss' if not np.isfinite(loss) else 'gradient norm'} at "
                        f"step {s} (loss {loss}, grad_norm {grad_norm}); stopped without saving: the "
                        f"newest checkpoint ({mngr.latest_step()}) is the last good one. Lower "
                        f"train.learning_rate or set train.grad_clip."
                    )
            s, m = fetched[-1]
            return {"step": s, "loss": float(m["loss"]), "grad_norm": float(m["grad_norm"])}

        profiler = _ProfileWindow(profile_steps, model_dir / "profile")
        step = bar_step = start_step
        try:
            with _SignalFlag() as stop:
                while step < train_steps:
                    local = next(data_iter)
                    profiler.before(step)
                    state, step_metrics = step_fn(state, global_batch(local))
                    step += 1
                    profiler.after(step, state)
                    window_steps += 1
                    pending.append((step, step_metrics))
                    if step == start_step + 1 and is_main and parsed_config is not None:
                        (model_dir / "operative_config.gin").write_text(gin.operative_config_str())
                    do_log = step % log_every == 0 or step == train_steps or step == start_step + 1
                    do_eval = bool(eval_every) and (step % eval_every == 0 or step == train_steps)
                    do_ckpt = step % checkpoint_every == 0 or step == train_steps
                    if do_log or do_eval or do_ckpt or stop.signum is not None:
                        row = flush(step)
                        elapsed = time.perf_counter() - window_start
                        tps = window_steps * tokens_per_step / max(elapsed, 1e-9)
                        row["lr"] = float(schedule_fn(step - 1))
                        row["tokens_per_s"] = tps
                        row["mfu"] = metrics.mfu(tps, flops_per_token, jax.device_count(), peak)
                        if do_eval:
                            row.update(run_eval(state["params"]))
                        if do_log or do_eval:
                            writer.write(row)
                            last = row
                            bar.update(step - bar_step, loss=row["loss"], tok_s=f"{tps:,.0f}")
                            bar_step = step
                            if do_eval:
                                text = f"step {step}: val_loss {row['val_loss']:.4f}"
                                if row.get("val_bpb") is not None:
                                    text += f", val_bpb {row['val_bpb']:.4f}"
                                bar.write(text)
                        if do_ckpt or stop.signum is not None:
                            save(step, force=stop.signum is not None)
                            writer.flush()  # a bucket's metrics.jsonl keeps up with it
                        window_start, window_steps = time.perf_counter(), 0
                    if stop.signum is not None:
                        raise Stopped(stop.signum, step)
        finally:
            bar.close()
            mngr.wait_until_finished()
            mngr.close()
            writer.close(plot=step >= train_steps)
        if is_main:
            (model_dir / "COMPLETED").write_text(f"step {step}\n")
        return last

    finally:
        if held is not None:
            held.release()


__all__ = ["train", "NonFiniteError", "Stopped", "data_lib"]
