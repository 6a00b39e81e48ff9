package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;
import java.util.random.RandomGenerator;

import moe4j.gguf.GgmlType;

/** Plain little-endian float32. */
public final class F32 extends BlockFormat {

    static final F32 INSTANCE = new F32();

    private F32() { super(GgmlType.F32); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        MemorySegment.copy(src, Layouts.FLOAT_LE, srcOffset, dst, dstOffset, blocks);
    }

    @Override
    public boolean canQuantize() { return true; }

    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        MemorySegment.copy(src, srcOffset, dst, Layouts.FLOAT_LE, dstOffset, blocks);
    }

    @Override
    void fillRandomBlock(RandomGenerator rnd, MemorySegment dst, long block) {
        dst.set(Layouts.FLOAT_LE, block, RandomWeights.next(rnd));
    }
}
