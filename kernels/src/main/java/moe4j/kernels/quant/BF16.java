package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;
import java.util.random.RandomGenerator;

import moe4j.gguf.GgmlType;

/** bfloat16: the top half of a float32; rounded to nearest even on write. */
public final class BF16 extends BlockFormat {

    static final BF16 INSTANCE = new BF16();

    private BF16() { super(GgmlType.BF16); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        for (int i = 0; i < blocks; i++) {
            dst[dstOffset + i] = Halfs.bf16ToFloat(src.get(Layouts.SHORT_LE, srcOffset + 2L * i));
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        for (int i = 0; i < blocks; i++) {
            dst.set(Layouts.SHORT_LE, dstOffset + 2L * i, Halfs.floatToBf16(src[srcOffset + i]));
        }
    }

    @Override
    void fillRandomBlock(RandomGenerator rnd, MemorySegment dst, long block) {
        dst.set(Layouts.SHORT_LE, block, Halfs.floatToBf16(RandomWeights.next(rnd)));
    }
}
