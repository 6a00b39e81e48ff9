package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;
import java.util.random.RandomGenerator;

import moe4j.gguf.GgmlType;

/** IEEE binary16, converted exactly on read and rounded to nearest even on write. */
public final class F16 extends BlockFormat {

    static final F16 INSTANCE = new F16();

    private F16() { super(GgmlType.F16); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        for (int i = 0; i < blocks; i++) {
            dst[dstOffset + i] = Float.float16ToFloat(src.get(Layouts.SHORT_LE, srcOffset + 2L * i));
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        for (int i = 0; i < blocks; i++) {
            dst.set(Layouts.SHORT_LE, dstOffset + 2L * i, Halfs.floatToFp16(src[srcOffset + i]));
        }
    }

    @Override
    void fillRandomBlock(RandomGenerator rnd, MemorySegment dst, long block) {
        dst.set(Layouts.SHORT_LE, block, Halfs.floatToFp16(RandomWeights.next(rnd)));
    }
}
