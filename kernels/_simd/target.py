"""The machine the SIMD blocks are compiled for, and the shapes that follow from it.

Numba compiles for the host unless ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` say otherwise
(``NUMBA_CPU_NAME=generic`` is baseline x86-64: SSE2, no FMA; a host feature string with every
``+avx512*`` turned to ``-avx512*`` is an AVX2 machine). The blocks read :data:`TARGET`, made
here from the same settings Numba's code generator reads (``numba.core.config``), so the vector
width and register blocks of the code are the ones its instructions can hold:

==================  =============  =========  ====================================================
target              vector bytes   registers  multiply-add
==================  =============  =========  ====================================================
x86-64 AVX-512      64 (zmm)       32         ``llvm.fma`` (one ``vfmadd``)
x86-64 AVX/AVX2     32 (ymm)       16         ``llvm.fma`` with ``+fma``, else ``llvm.fmuladd``
x86-64 SSE2         16 (xmm)       16         ``llvm.fmuladd`` (a multiply and an add)
AArch64 NEON        16 (q)         32         ``llvm.fma`` (``fmla``)
anything else       16             16         ``llvm.fmuladd``
==================  =============  =========  ====================================================

Where the target has no fused multiply-add instruction, ``llvm.fma`` would be a call into the C
library's ``fma`` per lane; ``llvm.fmuladd`` is what LLVM lowers well there, and it lowers the
same way in a vector block and in its scalar variant, so an element's value still does not
depend on which of them computed it. Results then differ from a fused target's in the last bits
(one more rounding per multiply-add), as any two machines' BLAS do.
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm
from numba.core import config


@dataclass(frozen=True)
class Target:
    """What the SIMD blocks are compiled for."""

    arch: str  # "x86_64", "aarch64" or the triple's first field
    cpu: str  # the CPU name LLVM compiles for ("znver4", "generic", ...)
    features: frozenset  # enabled feature names ("avx2", "fma", ...)
    vector_bytes: int
    registers: int  # vector registers of the architecture
    fma: bool  # a fused multiply-add instruction for vectors and scalars

    @property
    def isa(self) -> str:
        """A short name: ``avx512``, ``avx2``, ``avx``, ``sse2``, ``neon`` or the arch."""
        if self.arch == "x86_64":
            for name, feature in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx")):
                if feature in self.features:
                    return name
            return "sse2"
        return "neon" if self.arch == "aarch64" else self.arch


def parse_features(text: str) -> frozenset:
    """The enabled features of an LLVM feature string (``"+avx2,-avx512f,..."``); a later entry
    for the same feature wins, as in LLVM."""
    state = {}
    for item in (text or "").split(","):
        item = item.strip()
        if len(item) > 1 and item[0] in "+-":
            state[item[1:]] = item[0] == "+"
    return frozenset(name for name, on in state.items() if on)


def describe(arch: str, cpu: str, features) -> Target:
    """The :class:`Target` of an architecture, CPU name and set of enabled features."""
    features = frozenset(features)
    if arch == "x86_64":
        if "avx512f" in features:
            vector_bytes, registers = 64, 32
        elif "avx" in features:
            vector_bytes, registers = 32, 16
        else:
            vector_bytes, registers = 16, 16
        fma = "fma" in features or "avx512f" in features
    elif arch == "aarch64":
        vector_bytes, registers, fma = 16, 32, True  # NEON (SVE's wider vectors are not used)
    else:
        vector_bytes, registers, fma = 16, 16, False
    return Target(arch=arch, cpu=cpu, features=features, vector_bytes=vector_bytes, registers=registers, fma=fma)


def _arch(triple: str) -> str:
    first = triple.split("-", 1)[0].lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(first, first)


def compile_target() -> Target:
    """The target Numba's code generator compiles for in this process: the host, or what
    ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` say (read as Numba reads them)."""
    cpu = config.CPU_NAME or llvm.get_host_cpu_name()
    if config.CPU_FEATURES is not None:
        features = parse_features(config.CPU_FEATURES)
    else:
        features = frozenset(name for name, on in llvm.get_host_cpu_features().items() if on)
    return describe(_arch(llvm.get_process_triple()), cpu, features)


#: The target of this process's compiled code.
TARGET: Target = compile_target()


def host_features_without(*prefixes: str) -> str:
    """The host's LLVM feature string with every feature starting with one of ``prefixes``
    turned off: ``host_features_without("avx512")`` is this machine as an AVX2 one (for
    ``NUMBA_CPU_FEATURES``)."""
    items = []
    for name, on in sorted(llvm.get_host_cpu_features().items()):
        on = on and not name.startswith(prefixes)
        items.append(("+" if on else "-") + name)
    return ",".join(items)
