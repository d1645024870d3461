"""Ahead-of-time compilation of a run's programs for devices this machine does not have.

``compile_report`` lowers and compiles the train step that ``deepdive train`` would run (the
same :class:`~framework.train.program.TrainProgram`, abstract arguments only: nothing is
allocated) and reports what the compiler says about one chip: argument, output, aliased,
temporary and code bytes (XLA's ``memory_analysis()``), their total
``arguments + outputs - aliased + temp + code``, and whether it fits. The fit test is the
compiler's: a TPU program that does not fit fails to compile with ``RESOURCE_EXHAUSTED``, which
becomes :class:`DoesNotFit` with the bytes it needed. (``memory_analysis``'s total can exceed
the HBM of a program that fits, since libtpu's own accounting is tighter; it is the figure to
compare runs with, not the verdict.)
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from framework.core.errors import ConfigError

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_NEEDED = (
    re.compile(r"required for HLO temporaries \(([\d.]+)([KMGT]?)\)"),
    re.compile(r"Used ([\d.]+)([KMGT]?) of"),
)
_AVAILABLE = (
    re.compile(r"available HBM \(([\d.]+)([KMGT]?)\)"),
    re.compile(r"of ([\d.]+)([KMGT]?) hbm"),
)


class DoesNotFit(ConfigError):
    """The compiler refused the program for lack of device memory (exit 2 on the command line)."""

    def __init__(self, message: str, needed: int | None, available: int | None):
        super().__init__(message)
        self.needed, self.available = needed, available


def _bytes(patterns: tuple[re.Pattern, ...], text: str) -> int | None:
    for pattern in patterns:
        if found := pattern.search(text):
            return int(float(found.group(1)) * _UNITS[found.group(2)])
    return None


def out_of_memory(error: BaseException) -> tuple[int | None, int | None] | None:
    """(bytes needed, bytes available) when ``error`` is XLA's device out-of-memory at compile
    time, else None."""
    text = str(error)
    if "RESOURCE_EXHAUSTED" not in text and "HbmOom" not in text:
        return None
    return _bytes(_NEEDED, text), _bytes(_AVAILABLE, text)


@dataclasses.dataclass(frozen=True)
class Memory:
    """Per-chip bytes of a compiled program (``memory_analysis()``)."""

    arguments: int
    outputs: int
    aliased: int
    temp: int
    code: int

    @property
    def total(self) -> int:
        return self.arguments + self.outputs - self.aliased + self.temp + self.code

    def as_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "total": self.total}

    @classmethod
    def of(cls, compiled: Any) -> Memory:
        stats = compiled.memory_analysis()
        return cls(
            arguments=int(stats.argument_size_in_bytes),
            outputs=int(stats.output_size_in_bytes),
            aliased=int(stats.alias_size_in_bytes),
            temp=int(stats.temp_size_in_bytes),
            code=int(stats.generated_code_size_in_bytes),
        )


def gib(n: int | None) -> str:
    """Bytes for people: GiB with two decimals, MiB below one GiB."""
    if n is None:
        return "?"
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def compile_lowered(lowered: Any, what: str, hbm_bytes: int | None) -> tuple[Memory, float]:
    """Compile ``lowered``; (per-chip memory, seconds). DoesNotFit for a compile-time OOM."""
    start = time.perf_counter()
    try:
        compiled = lowered.compile()
    except Exception as error:  # noqa: BLE001 - XLA raises its own runtime error type
        oom = out_of_memory(error)
        if oom is None:
            raise
        needed, available = oom
        available = available or hbm_bytes
        raise DoesNotFit(
            f"{what} does not fit: it needs {gib(needed)} per chip and the chip has "
            f"{gib(available)}; try rematerialisation (models.NAME.remat = True), more FSDP (a larger "
            "fsdp axis in the mesh), or a smaller batch (BATCH_SIZE, or grad_accum_steps)",
            needed,
            available,
        ) from None
    return Memory.of(compiled), time.perf_counter() - start


def compile_report(
    program: Any,
    *,
    topology: str,
    chips: int,
    hbm_bytes_per_chip: int | None,
    batch_size: int,
    seq_len: int,
    packed: bool = False,
) -> dict[str, Any]:
    """Compile ``program``'s train step (on packed batches with segment ids when ``packed``) and
    report per-chip memory in the keys ``deepdive compile --json`` writes."""
    devices = list(program.mesh.devices.flat)
    state, batch = program.abstract_arguments(batch_size, seq_len, packed)
    start = time.perf_counter()
    lowered = program.train_step.lower(state, batch)
    memory, _ = compile_lowered(lowered, f"the train step on {topology}", hbm_bytes_per_chip)
    report: dict[str, Any] = {
        "topology": topology,
        "chips": chips,
        "device_kind": devices[0].device_kind,
        "mesh": {str(k): int(v) for k, v in program.mesh.shape.items()},
        "per_chip_bytes": memory.as_dict(),
        "hbm_bytes_per_chip": hbm_bytes_per_chip,
        "fits": True,  # the compiler accepted it
        "tokens_per_step": batch_size * seq_len,
        "packed": packed,
        "compile_s": round(time.perf_counter() - start, 2),
    }
    return report


def format_report(report: dict[str, Any]) -> str:
    """The table ``deepdive compile`` prints."""
    memory = report["per_chip_bytes"]
    mesh = " × ".join(f"{axis} {size}" for axis, size in report["mesh"].items())
    rows = [
        ("topology", f"{report['topology']} ({report['chips']} chips, {report['device_kind']})"),
        ("mesh", mesh),
        ("tokens per step", f"{report['tokens_per_step']:,}"),
        ("arguments", gib(memory["arguments"])),
        ("outputs", gib(memory["outputs"])),
        ("aliased", gib(memory["aliased"])),
        ("temporaries", gib(memory["temp"])),
        ("code", gib(memory["code"])),
        ("total per chip", gib(memory["total"])),
        ("HBM per chip", gib(report["hbm_bytes_per_chip"])),
        ("fits", "yes (the compiler accepted it)" if report["fits"] else "no"),
        ("compile time", f"{report['compile_s']:.1f} s"),
    ]
    if "decode" in report:
        decode = report["decode"]
        rows.append(("decode loop", f"{gib(decode['per_chip_bytes']['total'])} per chip "
                     f"(batch {decode['batch']}, {decode['prompt_tokens']} + "
                     f"{decode['new_tokens']} tokens), {decode['compile_s']:.1f} s"))  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
