package io.distca.protocol.tensor;

import java.util.Arrays;
import java.util.Objects;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;

/**
 * A dense row-major tensor over an Arrow buffer. Tensors received from the wire wrap the network
 * buffer directly (no copy); tensors produced by a backend are allocated from a child allocator so
 * that a leak fails that allocator's close().
 *
 * <p>A tensor either owns one reference to its buffer (and releases it on close) or is a view that
 * borrows its parent's memory ({@link #sliceRows}); closing a view does nothing.
 */
public final class Tensor implements AutoCloseable {
  private final DType dtype;
  private final int[] shape;
  private final long numel;
  private final ArrowBuf buffer;
  private final long byteOffset;
  private final boolean owner;
  private boolean closed;

  private Tensor(DType dtype, int[] shape, ArrowBuf buffer, long byteOffset, boolean owner) {
    this.dtype = Objects.requireNonNull(dtype, "dtype");
    this.shape = shape.clone();
    this.numel = numelOf(shape);
    this.buffer = Objects.requireNonNull(buffer, "buffer");
    this.byteOffset = byteOffset;
    this.owner = owner;
    long needed = byteOffset + numel * dtype.byteSize();
    if (needed > buffer.capacity()) {
      throw new IllegalArgumentException(
          "tensor " + dtype + Arrays.toString(shape) + " needs " + needed + " bytes, buffer has " + buffer.capacity());
    }
  }

  /** Allocates a zero-filled tensor that owns its buffer. */
  public static Tensor allocate(BufferAllocator allocator, DType dtype, int... shape) {
    long bytes = numelOf(shape) * dtype.byteSize();
    ArrowBuf buf = allocator.buffer(Math.max(bytes, 1));
    buf.setZero(0, buf.capacity());
    return new Tensor(dtype, shape, buf, 0, true);
  }

  /**
   * Allocates a tensor whose contents are undefined: for outputs that a backend writes in full (its
   * tests poison outputs with NaN to prove it), saving a pass over memory per request.
   */
  public static Tensor allocateUninitialized(BufferAllocator allocator, DType dtype, int... shape) {
    long bytes = numelOf(shape) * dtype.byteSize();
    return new Tensor(dtype, shape, allocator.buffer(Math.max(bytes, 1)), 0, true);
  }

  /** Takes over one reference of {@code buffer}: closing the tensor releases it. */
  public static Tensor adopt(ArrowBuf buffer, DType dtype, int... shape) {
    return new Tensor(dtype, shape, buffer, 0, true);
  }

  /** A view that borrows {@code buffer}: the caller keeps it alive for as long as the view is used. */
  public static Tensor view(ArrowBuf buffer, long byteOffset, DType dtype, int... shape) {
    return new Tensor(dtype, shape, buffer, byteOffset, false);
  }

  public static long numelOf(int[] shape) {
    long n = 1;
    for (int d : shape) {
      if (d < 0) {
        throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
      }
      n = Math.multiplyExact(n, d);
    }
    return n;
  }

  public DType dtype() {
    return dtype;
  }

  public int[] shape() {
    return shape.clone();
  }

  public int dim(int i) {
    return shape[i];
  }

  public int rank() {
    return shape.length;
  }

  public long numel() {
    return numel;
  }

  public long byteSize() {
    return numel * dtype.byteSize();
  }

  /** The underlying buffer; element 0 lives at {@link #byteOffset()}. */
  public ArrowBuf buffer() {
    return buffer;
  }

  public long byteOffset() {
    return byteOffset;
  }

  /** Absolute address of element 0 (for backends that read memory directly). */
  public long address() {
    return buffer.memoryAddress() + byteOffset;
  }

  /** Elements per index step of dimension 0. */
  public long rowStride() {
    long n = 1;
    for (int i = 1; i < shape.length; i++) {
      n *= shape[i];
    }
    return n;
  }

  /**
   * A view of this whole tensor that borrows its memory: closing the view releases nothing (what a
   * message built over tensors the caller keeps needs, since the encoder closes its set).
   */
  public Tensor borrow() {
    return new Tensor(dtype, shape.clone(), buffer, byteOffset, false);
  }

  /** A view of rows {@code [from, to)} along dimension 0, sharing memory with this tensor. */
  public Tensor sliceRows(int from, int to) {
    if (from < 0 || to < from || to > shape[0]) {
      throw new IndexOutOfBoundsException("rows [" + from + ", " + to + ") of " + Arrays.toString(shape));
    }
    int[] s = shape.clone();
    s[0] = to - from;
    return new Tensor(dtype, s, buffer, byteOffset + from * rowStride() * dtype.byteSize(), false);
  }

  public float getFloat(long index) {
    long at = byteOffset + index * dtype.byteSize();
    switch (dtype) {
      case BF16:
        return HalfFloats.bf16ToFloat(buffer.getShort(at));
      case FP16:
        return HalfFloats.fp16ToFloat(buffer.getShort(at));
      case FP32:
        return buffer.getFloat(at);
      case INT32:
        return buffer.getInt(at);
      default:
        throw new AssertionError(dtype);
    }
  }

  public void setFloat(long index, float value) {
    long at = byteOffset + index * dtype.byteSize();
    switch (dtype) {
      case BF16:
        buffer.setShort(at, HalfFloats.floatToBf16(value));
        break;
      case FP16:
        buffer.setShort(at, HalfFloats.floatToFp16(value));
        break;
      case FP32:
        buffer.setFloat(at, value);
        break;
      case INT32:
        buffer.setInt(at, (int) value);
        break;
      default:
        throw new AssertionError(dtype);
    }
  }

  public int getInt(long index) {
    if (dtype != DType.INT32) {
      throw new IllegalStateException("getInt on " + dtype + " tensor");
    }
    return buffer.getInt(byteOffset + index * 4L);
  }

  public void setInt(long index, int value) {
    if (dtype != DType.INT32) {
      throw new IllegalStateException("setInt on " + dtype + " tensor");
    }
    buffer.setInt(byteOffset + index * 4L, value);
  }

  /**
   * Copies {@code rows} rows (along dimension 0) of {@code src}, starting at {@code srcRow}, into this
   * tensor at {@code dstRow}. Same dtype and row size required: a raw memory copy.
   */
  public void copyRowsFrom(Tensor src, int srcRow, int dstRow, int rows) {
    if (src.dtype != dtype || src.rowStride() != rowStride()) {
      throw new IllegalArgumentException("row copy from " + src + " into " + this);
    }
    if (rows == 0) {
      return;
    }
    if (srcRow < 0 || dstRow < 0 || rows < 0 || srcRow + rows > src.shape[0] || dstRow + rows > shape[0]) {
      throw new IndexOutOfBoundsException(
          "rows [" + srcRow + ", +" + rows + ") of " + src + " into [" + dstRow + ", +" + rows + ") of " + this);
    }
    long rowBytes = rowStride() * dtype.byteSize();
    buffer.setBytes(byteOffset + dstRow * rowBytes, src.buffer, src.byteOffset + srcRow * rowBytes, rows * rowBytes);
  }

  /** Copies all elements of {@code src} (same shape, any dtype) into this tensor, converting. */
  public void copyFrom(Tensor src) {
    if (src.numel != numel) {
      throw new IllegalArgumentException("copy of " + src.numel + " elements into " + numel);
    }
    if (src.dtype == dtype) {
      buffer.setBytes(byteOffset, src.buffer, src.byteOffset, byteSize());
      return;
    }
    for (long i = 0; i < numel; i++) {
      setFloat(i, src.getFloat(i));
    }
  }

  @Override
  public void close() {
    if (!closed) {
      closed = true;
      if (owner) {
        buffer.close();
      }
    }
  }

  @Override
  public String toString() {
    return "Tensor(" + dtype + Arrays.toString(shape) + ")";
  }
}
