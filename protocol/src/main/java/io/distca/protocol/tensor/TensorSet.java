package io.distca.protocol.tensor;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** Named tensors carried by one message, in wire order. Closing the set closes every tensor. */
public final class TensorSet implements AutoCloseable {
  private final LinkedHashMap<String, Tensor> tensors = new LinkedHashMap<>();
  private final AutoCloseable onClose;
  private boolean closed;

  public TensorSet() {
    this(null);
  }

  /** @param onClose released after the tensors, e.g. the network buffer the tensors view */
  public TensorSet(AutoCloseable onClose) {
    this.onClose = onClose;
  }

  public TensorSet put(String name, Tensor tensor) {
    Tensor previous = tensors.put(name, tensor);
    if (previous != null) {
      previous.close();
    }
    return this;
  }

  /** Allocates a zeroed tensor, adds it under {@code name}, and returns it. */
  public Tensor putNew(String name, org.apache.arrow.memory.BufferAllocator allocator, DType dtype, int... shape) {
    Tensor t = Tensor.allocate(allocator, dtype, shape);
    put(name, t);
    return t;
  }

  public Tensor get(String name) {
    return tensors.get(name);
  }

  public boolean contains(String name) {
    return tensors.containsKey(name);
  }

  public Map<String, Tensor> asMap() {
    return Collections.unmodifiableMap(tensors);
  }

  public int size() {
    return tensors.size();
  }

  public long byteSize() {
    long n = 0;
    for (Tensor t : tensors.values()) {
      n += t.byteSize();
    }
    return n;
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    RuntimeException failure = null;
    for (Tensor t : tensors.values()) {
      try {
        t.close();
      } catch (RuntimeException e) {
        failure = e;
      }
    }
    tensors.clear();
    if (onClose != null) {
      try {
        onClose.close();
      } catch (Exception e) {
        failure = new IllegalStateException("releasing tensor storage failed", e);
      }
    }
    if (failure != null) {
      throw failure;
    }
  }
}
