"""What the CPU can do, from its flags: is bfloat16 arithmetic fast here?

bfloat16 matmuls are fast on x86 with AVX512-BF16 (Cooper Lake, Zen 4 and later) or AMX-BF16
(Sapphire Rapids and later): torch's oneDNN kernels use them. Anywhere else torch still runs
bfloat16, converting to float32 and back around each op, which is slower than plain float32.
Linux says which in /proc/cpuinfo; elsewhere the flags are unknown and nothing counts as fast.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # either one makes bfloat16 matmuls fast
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")  # what results report
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuFeatures:
    model: str
    flags: frozenset[str]

    @classmethod
    def parse(cls, cpuinfo: str) -> "CpuFeatures":
        """From /proc/cpuinfo's text: the first processor's model name and flags."""
        model, flags = "", None
        for line in cpuinfo.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key == "flags" and flags is None:
                flags = frozenset(value.split())
        return cls(model or platform.processor() or "unknown CPU", flags or frozenset())

    @classmethod
    def detect(cls, cpuinfo: Path = CPUINFO) -> "CpuFeatures":
        """This machine's; no flags where there is no /proc/cpuinfo (then bfloat16 never counts as fast)."""
        try:
            return cls.parse(cpuinfo.read_text())
        except OSError:
            return cls(platform.processor() or "unknown CPU", frozenset())

    @property
    def bf16_flags(self) -> tuple[str, ...]:
        return tuple(flag for flag in BF16_FLAGS if flag in self.flags)

    @property
    def fast_bf16(self) -> bool:
        return bool(self.bf16_flags)

    def describe(self) -> dict:
        """For benchmark results: the model and which of the flags that matter here it has."""
        return {"model": self.model, "flags": {flag: flag in self.flags for flag in SHOWN_FLAGS},
                "fast_bf16": self.fast_bf16}
