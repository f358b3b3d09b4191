package io.distca.client;

import io.distca.protocol.tensor.Tensor;

/** Copies of column ranges of [heads, tokens] fp32 LSE tensors: one contiguous run per head. */
final class LseColumns {
  private LseColumns() {}

  static void copy(Tensor src, int srcCol, Tensor dst, int dstCol, int cols) {
    if (cols == 0) {
      return;
    }
    int heads = src.dim(0);
    long srcStride = 4L * src.dim(1);
    long dstStride = 4L * dst.dim(1);
    for (int h = 0; h < heads; h++) {
      dst.buffer().setBytes(dst.byteOffset() + h * dstStride + 4L * dstCol,
          src.buffer(), src.byteOffset() + h * srcStride + 4L * srcCol, 4L * cols);
    }
  }
}
