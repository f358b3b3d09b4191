package io.distca.protocol.tensor;

import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;

/**
 * Tensors that one owner (a benchmark's batch, a test) allocates one by one and releases together:
 * closing it closes every tensor it allocated or adopted, once. Not thread-safe.
 */
public final class OwnedTensors implements AutoCloseable {
  private final BufferAllocator allocator;
  private final List<Tensor> tensors = new ArrayList<>();

  public OwnedTensors(BufferAllocator allocator) {
    this.allocator = allocator;
  }

  /** A zero-filled tensor, owned from now on. */
  public Tensor allocate(DType dtype, int... shape) {
    return adopt(Tensor.allocate(allocator, dtype, shape));
  }

  /** Takes {@code t} over: closing this closes it. */
  public Tensor adopt(Tensor t) {
    tensors.add(t);
    return t;
  }

  @Override
  public void close() {
    for (Tensor t : tensors) {
      t.close();
    }
    tensors.clear();
  }
}
