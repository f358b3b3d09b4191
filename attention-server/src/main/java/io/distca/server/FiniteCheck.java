package io.distca.server;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.Tensor;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * Finds NaN and infinite elements by their exponent bits, straight from memory: one pass, no
 * conversion, so it costs about a memory copy of the tensor.
 */
final class FiniteCheck {
  private FiniteCheck() {}

  /**
   * @param allowNegativeInfinity LSE legitimately holds -inf for rows that see no key
   * @return index of the first offending element, or -1
   */
  static long firstNonFinite(Tensor t, boolean allowNegativeInfinity) {
    long base = t.address();
    long n = t.numel();
    DType dtype = t.dtype();
    switch (dtype) {
      case BF16:
        return scan16(base, n, 0x7f80, allowNegativeInfinity ? (short) 0xff80 : 0);
      case FP16:
        return scan16(base, n, 0x7c00, allowNegativeInfinity ? (short) 0xfc00 : 0);
      case FP32:
        for (long i = 0; i < n; i++) {
          int bits = MemoryUtil.getInt(base + 4 * i);
          if ((bits & 0x7f800000) == 0x7f800000 && !(allowNegativeInfinity && bits == 0xff800000)) {
            return i;
          }
        }
        return -1;
      default:
        return -1;
    }
  }

  private static long scan16(long base, long n, int expMask, short allowed) {
    for (long i = 0; i < n; i++) {
      short s = MemoryUtil.getShort(base + 2 * i);
      if ((s & expMask) == expMask && (allowed == 0 || s != allowed)) {
        return i;
      }
    }
    return -1;
  }
}
