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

  /** {@code dst[dstRow + r][e] = t[row0 + r, head, e] * scale} for r in [0, rows): rows of one head. */
  static void loadRows(Tensor t, int heads, int head, int headDim, int row0, int rows, float scale,
      float[][] dst, int dstRow) {
    DType type = t.dtype();
    for (int r = 0; r < rows; r++) {
      long address = rowAddress(t, heads, headDim, row0 + r, head);
      float[] row = dst[dstRow + r];
      for (int e = 0; e < headDim; e++) {
        row[e] = element(type, address, e) * scale;
      }
    }
  }

  /** Transposed: {@code dst[dstRow + e][column + r] = t[row0 + r, head, e]} for r in [0, rows). */
  static void loadColumns(Tensor t, int heads, int head, int headDim, int row0, int rows,
      float[][] dst, int dstRow, int column) {
    DType type = t.dtype();
    for (int r = 0; r < rows; r++) {
      long address = rowAddress(t, heads, headDim, row0 + r, head);
      for (int e = 0; e < headDim; e++) {
        dst[dstRow + e][column + r] = element(type, address, e);
      }
    }
  }

  /** Element e of a row at {@code address}; the switch is loop-invariant for the JIT. */
  private static float element(DType type, long address, int e) {
    switch (type) {
      case BF16:
        return Float.intBitsToFloat(MemoryUtil.getShort(address + 2L * e) << 16);
      case FP16:
        return HalfFloats.fp16ToFloat(MemoryUtil.getShort(address + 2L * e));
      case FP32:
        return Float.intBitsToFloat(MemoryUtil.getInt(address + 4L * e));
      default:
        throw new IllegalArgumentException("not a float tensor: " + type);
    }
  }

  /** {@code t[row0 + r, head, e] = src[srcRow + r][e] * multiplier}, narrowed to t's dtype. */
  static void storeRows(float[][] src, int srcRow, int rows, float multiplier,
      Tensor t, int heads, int head, int headDim, int row0) {
    for (int r = 0; r < rows; r++) {
      writeRow(src[srcRow + r], 0, headDim, multiplier, t.dtype(), rowAddress(t, heads, headDim, row0 + r, head));
    }
  }

  /** {@code t[row0 + r, head, e] = src[r * headDim + e] * multiplier}: rows packed in one array. */
  static void storePackedRows(float[] src, int rows, float multiplier,
      Tensor t, int heads, int head, int headDim, int row0) {
    for (int r = 0; r < rows; r++) {
      writeRow(src, r * headDim, headDim, multiplier, t.dtype(), rowAddress(t, heads, headDim, row0 + r, head));
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
