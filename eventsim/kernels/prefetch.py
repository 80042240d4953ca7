"""A cache hint for kernels whose next reads are known but scattered."""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch_for_write(typingctx, array, row, column):
    """Ask the CPU to bring the cache line of ``array[row, column]`` (2-D) close, to be written.

    LLVM's ``llvm.prefetch`` (write, keep in all cache levels, data): a hint
    that changes no value and never faults, so an index past the end is
    harmless; a target without prefetching ignores it. Used where a kernel
    knows which scattered rows it reads next and the hardware prefetchers,
    which follow strides, do not.
    """
    if not (isinstance(array, types.Array) and array.ndim == 2):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        arr = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, arr, [args[1], args[2]],
                                           wraparound=False, boundscheck=False)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        hint = builder.module.declare_intrinsic("llvm.prefetch", [byte_pointer],
                                                ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]))
        write, keep_everywhere, data = (ir.Constant(i32, n) for n in (1, 3, 1))
        builder.call(hint, [builder.bitcast(pointer, byte_pointer), write, keep_everywhere, data])
        return context.get_dummy_value()

    return types.void(array, row, column), codegen
