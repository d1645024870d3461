"""The accelerators a sweep may ask for: an allow-list, because SkyPilot does not check names offline.

A sweep names an accelerator the way SkyPilot does:

* TPU slices as ``tpu-<generation>-<size>`` (``tpu-v5litepod-8``, ``tpu-v6e-8``, ``tpu-v5p-8``,
  ``tpu-v4-8``). The size counts TensorCores for v2/v3/v4/v5p and chips for v5e (``v5litepod``)
  and v6e, as Google Cloud names the slices. A slice is one SkyPilot node however many hosts it has.
* GPUs as ``NAME`` or ``NAME:COUNT`` per node (``H100:8``, ``A100-80GB:8``, ``L4:1``).

Each TPU generation carries its default TPU VM runtime version (the software image Google Cloud
boots on the slice) and the GPU/TPU names that xpk (GKE) uses for the same hardware.
"""

from __future__ import annotations

import dataclasses
import re

from framework.core import registry

# generation -> (runtime version, allowed sizes, cores per chip)
# Runtime versions: Google Cloud TPU docs, "TPU software versions" (v5e: v2-alpha-tpuv5-lite,
# v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e, v2-v4: tpu-ubuntu2204-base).
_POW2 = [2**i for i in range(0, 13)]
TPU_GENERATIONS: dict[str, tuple[str, list[int], int]] = {
    "v2": ("tpu-ubuntu2204-base", [8, 32, 128, 256, 512], 2),
    "v3": ("tpu-ubuntu2204-base", [8, 32, 64, 128, 256, 512, 1024, 2048], 2),
    "v4": ("tpu-ubuntu2204-base", [n for n in _POW2 if 8 <= n <= 4096], 2),
    "v5p": ("v2-alpha-tpuv5", [n for n in _POW2 if 8 <= n <= 8192], 2),
    "v5litepod": ("v2-alpha-tpuv5-lite", [1, 4, 8, 16, 32, 64, 128, 256], 1),
    "v6e": ("v2-alpha-tpuv6e", [1, 4, 8, 16, 32, 64, 128, 256], 1),
}

# xpk's TPU slice sizes (xpk core/system_characteristics.py); v5e has no 1- or 4-chip GKE slices.
XPK_TPU_SIZES: dict[str, list[int]] = {
    "v4": [n for n in _POW2 if 8 <= n <= 4096],
    "v5p": [n for n in _POW2 if 8 <= n <= 8192],
    "v5litepod": [8, 16, 32, 64, 128, 256],
    "v6e": [1, 4, 8, 16, 32, 64, 128, 256],
}

# SkyPilot GPU name -> {GPUs per node: xpk --device-type} (empty: xpk has no GKE type for it)
GPUS: dict[str, dict[int, str]] = {
    "H100": {8: "h100-80gb-8"},
    "H100-MEGA": {8: "h100-mega-80gb-8"},
    "H200": {8: "h200-141gb-8"},
    "B200": {8: "b200-8"},
    "GB200": {4: "gb200-4"},
    "A100": {n: f"a100-40gb-{n}" for n in (1, 2, 4, 8)},
    "A100-80GB": {},
    "L4": {n: f"l4-{n}" for n in (1, 2, 4, 8)},
    "L40S": {},
    "A10G": {},
    "A10": {},
    "T4": {},
    "V100": {},
    "RTX6000-Ada": {},
}

_TPU_RE = re.compile(r"^tpu-(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)$")


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """A checked accelerator: ``kind`` is ``tpu`` or ``gpu``; ``count`` is per node (TPU: 1)."""

    kind: str
    name: str  # SkyPilot name without the count: "tpu-v5litepod-8", "H100"
    count: int
    generation: str | None = None  # TPU generation ("v5litepod")
    size: int | None = None  # TPU slice size as in the name (cores or chips)

    @property
    def skypilot(self) -> str:
        """The ``resources.accelerators`` value SkyPilot expects."""
        return self.name if self.kind == "tpu" else f"{self.name}:{self.count}"

    @property
    def runtime_version(self) -> str | None:
        return TPU_GENERATIONS[self.generation][0] if self.kind == "tpu" else None

    @property
    def chips(self) -> int:
        if self.kind != "tpu":
            return self.count
        return self.size // TPU_GENERATIONS[self.generation][2]

    @property
    def jax_devices(self) -> int:
        """JAX devices per node: chips (v4 and later: one device per chip), TensorCores for
        v2/v3, GPUs."""
        if self.kind != "tpu":
            return self.count
        return self.size if self.generation in ("v2", "v3") else self.chips

    @property
    def tpu_vm_hosts(self) -> int:
        """Hosts of the slice as a Cloud TPU VM (SkyPilot): v5e/v6e up to 8 chips on one host,
        otherwise 4 chips per host."""
        if self.kind != "tpu":
            return 1
        if self.generation in ("v5litepod", "v6e") and self.chips <= 8:
            return 1
        return max(1, self.chips // 4)

    @property
    def gke_vms(self) -> int:
        """VMs of the slice on GKE (xpk): 4 chips per VM, except single-chip slices."""
        if self.kind != "tpu":
            return 1
        return 1 if self.chips == 1 else self.chips // 4

    @property
    def jax_extra(self) -> str:
        """The deepdive extra that installs the matching JAX build."""
        return "tpu" if self.kind == "tpu" else "cuda12"

    def xpk_device(self) -> tuple[str, str]:
        """``("--tpu-type", "v5litepod-8")`` or ``("--device-type", "h100-80gb-8")`` for xpk."""
        if self.kind == "tpu":
            sizes = XPK_TPU_SIZES.get(self.generation or "", [])
            if self.size not in sizes:
                raise ValueError(
                    f"xpk (GKE) has no TPU slice {self.name!r}; GKE slices of "
                    f"{self.generation}: {', '.join(f'{self.generation}-{s}' for s in sizes) or 'none'}"
                )
            return "--tpu-type", f"{self.generation}-{self.size}"
        types = GPUS[self.name]
        if self.count not in types:
            offered = ", ".join(f"{self.name}:{n}" for n in sorted(types)) or "none"
            raise ValueError(
                f"xpk (GKE) has no device type for {self.skypilot}; GKE offers: {offered}"
            )
        return "--device-type", types[self.count]


def known_names() -> list[str]:
    tpus = [f"tpu-{g}-{s}" for g, (_, sizes, _) in TPU_GENERATIONS.items() for s in sizes]
    return tpus + list(GPUS)


def parse(spec: str, count: int | None = None) -> Accelerator:
    """Check ``spec`` (``tpu-v6e-8``, ``H100:8``, ``h100`` with ``count=8``) against the allow-list.

    Raises ValueError with close-match suggestions for an unknown name or an impossible count.
    """
    text = spec.strip()
    name, _, count_text = text.partition(":")
    if count_text:
        if not count_text.isdigit() or int(count_text) < 1:
            raise ValueError(
                f"accelerator {spec!r}: the count after ':' must be a positive integer"
            )
        if count is not None and count != int(count_text):
            raise ValueError(
                f"accelerator {spec!r} says {count_text} per node but count = {count}; give one"
            )
        count = int(count_text)
    match = _TPU_RE.match(name.lower())
    if match:
        generation, size = match.group(1), int(match.group(2))
        sizes = TPU_GENERATIONS[generation][1]
        if size not in sizes:
            raise ValueError(
                f"unknown accelerator {spec!r}: TPU {generation} slices are "
                f"{', '.join(f'tpu-{generation}-{s}' for s in sizes)}"
            )
        if count not in (None, 1):
            raise ValueError(
                f"accelerator {spec!r}: a TPU slice is named by its size; count must be 1 "
                f"(ask for a bigger slice, e.g. tpu-{generation}-{size * count})"
            )
        return Accelerator("tpu", f"tpu-{generation}-{size}", 1, generation, size)
    by_lower = {g.lower(): g for g in GPUS}
    if name.lower() in by_lower:
        return Accelerator("gpu", by_lower[name.lower()], count or 1)
    raise ValueError(
        f"unknown accelerator {spec!r}: {registry.suggest(name, known_names())}"
        f"known: TPU slices tpu-{{{','.join(TPU_GENERATIONS)}}}-SIZE (e.g. tpu-v5litepod-8, "
        f"tpu-v6e-8), GPUs {', '.join(GPUS)} (as NAME:COUNT, e.g. H100:8)"
    )
