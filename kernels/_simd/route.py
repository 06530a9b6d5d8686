"""The max-pool backward's row writer: eight elements of an input-gradient row of the 2x2
stride-2 pool, each its window's gradient or zero as the window's index says, in one
non-temporal store (:func:`route2x2_streaming`).

A large float64 gradient (on (16, 32, 128, 128), 67 MB) is written once and read later by
someone else: stored the ordinary way, every line is first read for ownership, a third of the
call's traffic. Streamed, the call took 3.0-3.8 ms against 4.6-4.9 on the 2-core Intel Xeon
(calls alternating). float32 keeps ordinary stores: its eight-lane stores are half lines, and
streamed it ran 3.1 ms against 1.4.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .vectors import _data

#: Elements per store: eight float64 fill one 64-byte line.
ROUTE_LANES = 8


@intrinsic
def route2x2_streaming(typingctx, o, obase, gy, idx, ybase, target0):
    """``o[obase + j] = (0.0 + gy[ybase + j // 2]) if idx[ybase + j // 2] == target0 + j
    else 0.0`` for ``j < ROUTE_LANES``, in one non-temporal store: ``o + obase`` must be aligned
    to the store (``ROUTE_LANES`` elements), and a :func:`store_fence` must follow before the
    output is read. Reads ``gy[ybase : ybase + ROUTE_LANES // 2]`` and the same of ``idx``
    (int64). ``0.0 + g`` turns -0.0 into 0.0, as the general kernel's addition into zero."""
    lanes, half = ROUTE_LANES, ROUTE_LANES // 2

    def codegen(context, builder, sig, args):
        o_, obase_, gy_, idx_, ybase_, t0_ = args
        scalar = context.get_value_type(sig.args[0].dtype)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        fvec, ivec = ir.VectorType(scalar, lanes), ir.VectorType(i64, lanes)
        fhalf, ihalf = ir.VectorType(scalar, half), ir.VectorType(i64, half)
        width = sig.args[0].dtype.bitwidth // 8
        gptr = builder.gep(_data(context, builder, sig.args[2], gy_), [ybase_])
        iptr = builder.gep(_data(context, builder, sig.args[3], idx_), [ybase_])
        g = builder.load(builder.bitcast(gptr, fhalf.as_pointer()), align=width)
        k = builder.load(builder.bitcast(iptr, ihalf.as_pointer()), align=8)
        pairs = ir.Constant(ir.VectorType(i32, lanes), [j // 2 for j in range(lanes)])
        g = builder.shuffle_vector(g, ir.Constant(fhalf, ir.Undefined), pairs)
        k = builder.shuffle_vector(k, ir.Constant(ihalf, ir.Undefined), pairs)
        t0 = builder.insert_element(ir.Constant(ivec, ir.Undefined), t0_, ir.Constant(i32, 0))
        splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
        t0 = builder.shuffle_vector(t0, ir.Constant(ivec, ir.Undefined), splat)
        hit = builder.icmp_signed("==", k, builder.add(t0, ir.Constant(ivec, list(range(lanes)))))
        zero = ir.Constant(fvec, [0.0] * lanes)
        optr = builder.gep(_data(context, builder, sig.args[0], o_), [obase_])
        st = builder.store(builder.select(hit, builder.fadd(g, zero), zero), builder.bitcast(optr, fvec.as_pointer()),
                           align=lanes * width)
        st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(i32, 1)]))
        return context.get_dummy_value()

    return types.none(o, types.intp, gy, idx, types.intp, types.int64), codegen
