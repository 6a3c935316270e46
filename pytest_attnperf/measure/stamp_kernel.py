"""The SM-0 timestamps kernel, in Triton (imported only when a CUDA run reads the clock; needs triton).

One single-warp program per SM; the program that runs on SM 0 stores ``%globaltimer`` (ns) and
``%clock64`` (cycles) at ``out[2 * slot]`` and ``out[2 * slot + 1]``. ``%smid`` is fixed for a
program's life (pure); the two timers must be neither merged nor moved (not pure: Triton emits
them as volatile asm with memory effects). ``slot`` is not specialised on, so one compiled kernel
serves every slot.

No ``from __future__ import annotations`` and no annotations on the kernel: Triton reads a jit
function's annotations, and a string such as ``"Any"`` is a global it refuses to resolve (seen on
the H200: "Cannot access global variable Any from within @jit'ed function").
"""

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["slot"])
def stamp(out_ptr, slot):  # type: ignore[no-untyped-def]
    sm = tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=True, pack=1)
    if sm == 0:
        ns = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)
        cycles = tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)
        tl.store(out_ptr + 2 * slot, ns)
        tl.store(out_ptr + 2 * slot + 1, cycles)
