package io.distca.server.backend.cpu;

import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.HalfFloats;
import io.distca.protocol.tensor.Tensor;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * Moves tiles between packed [rows, heads, head_dim] tensors and fp32 scratch through raw addresses.
 * Going through {@link Tensor#getFloat} would bounds-check and switch on the dtype per element; here
 * the dtype switch is hoisted out of the row loop and {@link BatchValidation} has already proven
 * every row in range.
 *
 * @see io.distca.server.backend.BatchValidation
 */
final class TileIo {
  private TileIo() {}

  /** Address of element {@code [row, head, 0]} of a packed [rows, heads, headDim] tensor. */
  static long rowAddress(Tensor t, int heads, int headDim, int row, int head) {
    return t.address() + ((long) row * heads + head) * headDim * t.dtype().byteSize();
  }

  /**
   * {@code dst[dstAt + r * rowStride + e] = t[row0 + r, head, e] * scale} for r in [0, rows): rows of
   * one head, one after another.
   */
  static void loadRows(Tensor t, int heads, int head, int headDim, int row0, int rows, float scale,
      float[] dst, int dstAt, int rowStride) {
    for (int r = 0; r < rows; r++) {
      readRow(t.dtype(), rowAddress(t, heads, headDim, row0 + r, head), headDim, scale, dst, dstAt + r * rowStride, 1);
    }
  }

  /** Transposed: {@code dst[dstAt + e * columnStride + r] = t[row0 + r, head, e]} for r in [0, rows). */
  static void loadColumns(Tensor t, int heads, int head, int headDim, int row0, int rows,
      float[] dst, int dstAt, int columnStride) {
    for (int r = 0; r < rows; r++) {
      readRow(t.dtype(), rowAddress(t, heads, headDim, row0 + r, head), headDim, 1f, dst, dstAt + r, columnStride);
    }
  }

  private static void readRow(DType type, long address, int n, float scale, float[] dst, int at, int stride) {
    switch (type) {
      case BF16:
        for (int e = 0; e < n; e++) {
          dst[at + e * stride] = Float.intBitsToFloat(MemoryUtil.getShort(address + 2L * e) << 16) * scale;
        }
        break;
      case FP16:
        for (int e = 0; e < n; e++) {
          dst[at + e * stride] = HalfFloats.fp16ToFloat(MemoryUtil.getShort(address + 2L * e)) * scale;
        }
        break;
      case FP32:
        for (int e = 0; e < n; e++) {
          dst[at + e * stride] = Float.intBitsToFloat(MemoryUtil.getInt(address + 4L * e)) * scale;
        }
        break;
      default:
        throw new IllegalArgumentException("not a float tensor: " + type);
    }
  }

  /** {@code t[row0 + r, head, e] = src[srcAt + r * rowStride + e] * multiplier}, narrowed to t's dtype. */
  static void storeRows(float[] src, int srcAt, int rowStride, int rows, float multiplier,
      Tensor t, int heads, int head, int headDim, int row0) {
    for (int r = 0; r < rows; r++) {
      writeRow(src, srcAt + r * rowStride, headDim, multiplier, t.dtype(), rowAddress(t, heads, headDim, row0 + r, head));
    }
  }

  private static void writeRow(float[] src, int at, int n, float multiplier, DType type, long address) {
    switch (type) {
      case BF16:
        for (int e = 0; e < n; e++) {
          MemoryUtil.putShort(address + 2L * e, HalfFloats.floatToBf16(src[at + e] * multiplier));
        }
        break;
      case FP16:
        for (int e = 0; e < n; e++) {
          MemoryUtil.putShort(address + 2L * e, HalfFloats.floatToFp16(src[at + e] * multiplier));
        }
        break;
      case FP32:
        for (int e = 0; e < n; e++) {
          MemoryUtil.putInt(address + 4L * e, Float.floatToRawIntBits(src[at + e] * multiplier));
        }
        break;
      default:
        throw new IllegalArgumentException("not a float tensor: " + type);
    }
  }

  static float readFloat32(Tensor fp32, long index) {
    return Float.intBitsToFloat(MemoryUtil.getInt(fp32.address() + 4L * index));
  }

  static void writeFloat32(Tensor fp32, long index, float value) {
    MemoryUtil.putInt(fp32.address() + 4L * index, Float.floatToRawIntBits(value));
  }

  static void zero(Tensor t) {
    MemoryUtil.setMemory(t.address(), t.byteSize(), (byte) 0);
  }
}
