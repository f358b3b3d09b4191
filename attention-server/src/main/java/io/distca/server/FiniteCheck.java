package io.distca.server;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * Finds NaN and infinite elements by their exponent bits, straight from memory, eight bytes at a
 * time (SWAR: four 16-bit or two 32-bit lanes per long), so that checking a request costs about
 * one pass of memory bandwidth instead of a branch per element. Only a word that holds a suspect
 * lane is examined element by element.
 */
final class FiniteCheck {
  private static final long EXP16 = 0x7f807f807f807f80L; // bf16 exponent bits, four lanes
  private static final long EXP_FP16 = 0x7c007c007c007c00L;
  private static final long EXP32 = 0x7f8000007f800000L;

  private FiniteCheck() {}

  /**
   * @param allowNegativeInfinity LSE legitimately holds -inf for rows that see no key
   * @return index of the first offending element, or -1
   */
  static long firstNonFinite(Tensor t, boolean allowNegativeInfinity) {
    DType dtype = t.dtype();
    switch (dtype) {
      case BF16:
        return scan(t, EXP16, 2, allowNegativeInfinity);
      case FP16:
        return scan(t, EXP_FP16, 2, allowNegativeInfinity);
      case FP32:
        return scan(t, EXP32, 4, allowNegativeInfinity);
      default:
        return -1;
    }
  }

  private static long scan(Tensor t, long expMask, int elementBytes, boolean allowNegInf) {
    long base = t.address();
    long bytes = t.byteSize();
    long words = bytes / 8;
    for (long w = 0; w < words; w++) {
      long x = MemoryUtil.getLong(base + 8 * w);
      // a lane is suspect when all its exponent bits are set: (x & mask) == mask in that lane
      if (hasFullLane(x & expMask, expMask, elementBytes)) {
        long first = w * 8 / elementBytes;
        long found = scanElements(t, base, first, first + 8 / elementBytes, allowNegInf);
        if (found >= 0) {
          return found;
        }
      }
    }
    return scanElements(t, base, words * 8 / elementBytes, t.numel(), allowNegInf);
  }

  private static boolean hasFullLane(long masked, long mask, int elementBytes) {
    // lanes equal to their mask become zero after xor; detect a zero lane among the nonzero-mask bits
    long diff = masked ^ mask;
    if (elementBytes == 2) {
      return (diff & 0xffffL) == 0 || (diff & 0xffff0000L) == 0 || (diff & 0xffff00000000L) == 0
          || (diff & 0xffff000000000000L) == 0;
    }
    return (diff & 0xffffffffL) == 0 || (diff & 0xffffffff00000000L) == 0;
  }

  private static long scanElements(Tensor t, long base, long from, long to, boolean allowNegInf) {
    for (long i = from; i < to; i++) {
      boolean bad;
      switch (t.dtype()) {
        case BF16: {
          short s = MemoryUtil.getShort(base + 2 * i);
          bad = (s & 0x7f80) == 0x7f80 && !(allowNegInf && s == (short) 0xff80);
          break;
        }
        case FP16: {
          short s = MemoryUtil.getShort(base + 2 * i);
          bad = (s & 0x7c00) == 0x7c00 && !(allowNegInf && s == (short) 0xfc00);
          break;
        }
        default: {
          int bits = MemoryUtil.getInt(base + 4 * i);
          bad = (bits & 0x7f800000) == 0x7f800000 && !(allowNegInf && bits == 0xff800000);
        }
      }
      if (bad) {
        return i;
      }
    }
    return -1;
  }
}
