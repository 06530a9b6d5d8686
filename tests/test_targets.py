"""The SIMD code for targets other than the host (issue 13): the vector width and register blocks
follow the target Numba compiles for (:mod:`kernels._simd.target`); the convolution and pooling
tests pass for an AVX2 and a baseline x86-64 target, each compiled in its own process with its
own cache; the generated code uses the registers meant; and the IR the blocks emit for an AArch64
target compiles for AArch64 (no x86 intrinsic leaks into it).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import kernels
from kernels import _simd
from kernels._simd import target as T

ROOT = Path(__file__).resolve().parents[1]
ON_X86 = T.TARGET.arch == "x86_64"

#: The tests each other target runs: the comparisons with the references and with SciPy and
#: PyTorch, the SIMD blocks' tails and alignments, the properties, and the guard pages.
SELECTION = ["tests/test_conv.py", "tests/test_pool.py", "tests/test_guard_pages.py",
             "tests/test_targets.py::test_generated_code_uses_the_targets_registers"]


def _other_targets():
    """name -> (environment, expected ISA) of the x86 targets narrower than this host (an AVX2
    host's own run of the suite is its AVX2 run)."""
    targets = {
        "avx2": ({"NUMBA_CPU_FEATURES": T.host_features_without("avx512", "evex512", "avx10")}, "avx2"),
        "generic": ({"NUMBA_CPU_NAME": "generic"}, "sse2"),
    }
    return {name: t for name, t in targets.items() if t[1] != T.TARGET.isa}


# ------------------------------------------------------------------ the target's description


@pytest.mark.parametrize("arch,features,isa,vector_bytes,registers,fma", [
    ("x86_64", {"avx512f", "avx2", "avx", "fma"}, "avx512", 64, 32, True),
    ("x86_64", {"avx2", "avx", "fma"}, "avx2", 32, 16, True),
    ("x86_64", {"avx"}, "avx", 32, 16, False),
    ("x86_64", set(), "sse2", 16, 16, False),
    ("aarch64", {"neon"}, "neon", 16, 32, True),
    ("riscv64", set(), "riscv64", 16, 16, False),
])
def test_describe_gives_each_target_its_width_registers_and_multiply_add(arch, features, isa, vector_bytes,
                                                                         registers, fma):
    t = T.describe(arch, "cpu", features)
    assert (t.isa, t.vector_bytes, t.registers, t.fma) == (isa, vector_bytes, registers, fma)


def test_feature_strings_parse_as_llvm_reads_them():
    assert T.parse_features("+avx2,-avx512f,+fma") == {"avx2", "fma"}
    assert T.parse_features("+avx512f,-avx512f") == frozenset()  # the later entry wins
    assert T.parse_features("") == frozenset()
    narrowed = T.parse_features(T.host_features_without("avx512"))
    assert not any(f.startswith("avx512") for f in narrowed)


def test_the_blocks_follow_the_target():
    t = _simd.TARGET
    assert _simd.VECTOR_BYTES == t.vector_bytes
    assert _simd.MULADD == ("fma" if t.fma else "fmuladd")
    assert _simd.POSITION_VECTORS == (4 if t.registers >= 32 else 2)
    assert _simd.TAP_POSITION_VECTORS == (4 if t.registers >= 32 else 3)
    assert _simd.GRAD_CHANNEL_BLOCK == (2 if t.registers >= 32 else 1)


# ------------------------------------------------------------------ the generated code


ASM_SCRIPT = textwrap.dedent(
    r'''
    import numpy as np
    import kernels
    from kernels.conv import blocked
    x = np.random.default_rng(0).standard_normal((1, 8, 20, 20))
    kernels.correlate2d(x, np.random.default_rng(1).standard_normal((8, 8, 3, 3)), padding=1)
    k = blocked._correlate_blocked_kernel
    print("\n".join(k.inspect_asm(sig) for sig in k.signatures))
    '''
)


def test_generated_code_uses_the_targets_registers():
    """The blocked correlation's machine code, compiled afresh (Numba shows no code it loaded
    from the cache) for this process's target, holds the vector registers of the target's width
    and none wider, and no call to the C library's fma (a vector llvm.fma without the
    instruction)."""
    if _simd.TARGET.arch != "x86_64":
        pytest.skip(f"register names are checked on x86 targets; this one is {_simd.TARGET.arch}")
    p = subprocess.run([sys.executable, "-c", ASM_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, KERNELS_CACHE="0"))
    assert p.returncode == 0, p.stderr[-4000:]
    asm = p.stdout
    registers = {name: bool(re.search(rf"%{name}\d", asm)) for name in ("xmm", "ymm", "zmm")}
    widest = {64: "zmm", 32: "ymm", 16: "xmm"}[_simd.VECTOR_BYTES]
    assert registers[widest], f"{_simd.TARGET.isa}: no %{widest} register in the blocked kernel"
    for wider in {"xmm": ("ymm", "zmm"), "ymm": ("zmm",), "zmm": ()}[widest]:
        assert not registers[wider], f"{_simd.TARGET.isa}: %{wider} registers in code meant for {widest}"
    assert not re.search(r"call\s+\S*\bfmaf?\b", asm), "a library call per lane for a multiply-add"


def _target_env(name, workdir):
    env_extra, _ = _other_targets()[name]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(workdir / name), NUMBA_NUM_THREADS="1", **env_extra)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _target_runs(workdir):
    """The selection's run for each other target (started in the background: tests/conftest.py)."""
    if not ON_X86:
        return {}
    return {name: dict(argv=[sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SELECTION],
                       env=_target_env(name, workdir), cwd=ROOT, timeout=1500)
            for name in _other_targets()}


@pytest.mark.skipif(not ON_X86, reason="the narrower targets emulated here are x86 ones")
@pytest.mark.background(start=_target_runs)
def test_conv_and_pool_tests_pass_for_avx2_and_generic_targets(background):
    """Each target in its own process, compile cache and feature settings, on one core each:
    the selection passes, and the process compiled for the ISA it was asked for."""
    failed = {}
    for name, (_, isa) in _other_targets().items():
        check = subprocess.run([sys.executable, "-c", "from kernels import _simd; print(_simd.TARGET.isa)"],
                               cwd=ROOT, env=_target_env(name, background.workdir), capture_output=True, text=True,
                               timeout=120)
        assert check.stdout.strip() == isa, check.stdout + check.stderr
    for name, job in background.items():
        rc, out, err = job.result()
        if rc != 0 or "passed" not in out:
            failed[name] = out[-4000:] + err[-2000:]
    assert not failed, failed


# ------------------------------------------------------------------ AArch64


AARCH64_SCRIPT = textwrap.dedent(
    r'''
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("kernels._simd.target", sys.argv[1])
    target = importlib.util.module_from_spec(spec)
    sys.modules["kernels._simd.target"] = target
    spec.loader.exec_module(target)
    target.TARGET = target.describe("aarch64", "generic", {"neon"})  # before the blocks read it
    import numpy as np
    import kernels
    from kernels import _simd
    from kernels.conv import blocked, direct, filter_grad, stencil3x3
    assert (_simd.VECTOR_BYTES, _simd.POSITION_VECTORS, _simd.STREAMING_SUPPORTED) == (16, 4, False)
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        x = rng.standard_normal((1, 4, 40, 40)).astype(dtype)
        w = rng.standard_normal((4, 4, 3, 3)).astype(dtype)
        y = kernels.correlate2d(x, w, padding=1)
        kernels.correlate2d_backward(np.ones_like(y), x, w, padding=1)
        kernels.correlate2d(x[:, :1], w[:1, :1], padding=1)
        w5 = rng.standard_normal((4, 4, 5, 5)).astype(dtype)
        y5 = kernels.correlate2d(x, w5, padding=2)
        kernels.correlate2d_backward(np.ones_like(y5), x, w5, padding=2)
        w1 = rng.standard_normal((4, 4, 1, 1)).astype(dtype)
        kernels.correlate2d_backward(np.ones_like(x), x, w1, grads=("w",))
        kernels.correlate2d(x, w, padding=1, stride=2)
        kernels.correlate2d(x, w, padding=1, stride=3)
    kernels_ = [*blocked.BANDS, blocked._correlate_blocked_kernel, stencil3x3._stencil3x3_span,
                direct._fused3x3_span,
                filter_grad._grad_w3x3_kernel, filter_grad._grad_w_taps_kernel, filter_grad._grad_w_pairs_kernel]
    for k in kernels_:
        for sig in k.signatures:
            sys.stdout.write(k.inspect_llvm(sig) + "\n;;;;NEXT\n")
    '''
)


def _retarget(ir_text: str, triple: str, datalayout: str) -> str:
    """The module's IR for another target: its triple and data layout, and no host CPU or
    feature attributes (the functions' own code is left as it is)."""
    ir_text = re.sub(r'^target triple = ".*"$', f'target triple = "{triple}"', ir_text, flags=re.M)
    ir_text = re.sub(r'^target datalayout = ".*"$', f'target datalayout = "{datalayout}"', ir_text, flags=re.M)
    return re.sub(r'"target-(cpu|features)"="[^"]*"', "", ir_text)


def _aarch64_ir(workdir):
    """The blocks' IR as emitted for AArch64, printed by a subprocess (in the background)."""
    return {"ir": dict(argv=[sys.executable, "-c", AARCH64_SCRIPT, str(Path(T.__file__))], cwd=ROOT, timeout=600,
                       env=dict(os.environ, NUMBA_CACHE_DIR=str(workdir / "cache"), NUMBA_OPT="0"))}


@pytest.mark.background(start=_aarch64_ir)
def test_simd_blocks_compile_for_aarch64(background):
    """The blocks as emitted for a NEON target (16-byte vectors, 32 registers, no streaming
    stores), compiled here by Numba for the host without optimisation (``NUMBA_OPT=0``: the IR as
    emitted, before the host's back end has rewritten any of it), then handed to LLVM's AArch64
    back end: every module verifies and compiles, its code uses NEON multiply-adds, and no x86
    intrinsic is in it."""
    import llvmlite.binding as llvm

    rc, out, err = background["ir"].result()
    assert rc == 0, err[-4000:]
    modules = [m for m in out.split(";;;;NEXT\n") if m.strip()]
    assert len(modules) >= 6
    try:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
    except RuntimeError:  # llvmlite >= 0.44 initialises them itself
        pass
    triple = "aarch64-unknown-linux-gnu"
    tm = llvm.Target.from_triple(triple).create_target_machine(cpu="generic", features="+neon", opt=2)
    fmla = 0
    for text in modules:
        assert "llvm.x86." not in text, "an x86 intrinsic in the blocks emitted for AArch64"
        mod = llvm.parse_assembly(_retarget(text, triple, str(tm.target_data)))
        mod.verify()
        asm = tm.emit_assembly(mod)
        fmla += len(re.findall(r"\bfml[as]\s+v\d+\.(2d|4s)", asm))
    assert fmla > 0, "no NEON vector multiply-add in the AArch64 code"
