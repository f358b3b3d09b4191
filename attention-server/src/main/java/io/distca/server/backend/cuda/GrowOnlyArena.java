package io.distca.server.backend.cuda;

import java.util.Objects;

/**
 * One reusable block that only ever grows: a pipeline slot lays out all buffers of a batch inside it
 * ({@link ArenaLayout}) and asks for the total. After the first few batches the block is large enough
 * and requests allocate nothing. Growth frees the old block first, so the caller must guarantee that
 * no device work still reads it (a slot only grows once its previous batch completed).
 *
 * <p>Growth over-allocates by {@link #GROWTH_FACTOR} so that a slowly rising batch size does not
 * reallocate every time; when that larger request fails (out of memory), the exact size is tried.
 */
final class GrowOnlyArena<B extends MemoryBlock> implements AutoCloseable {
  static final double GROWTH_FACTOR = 1.25;

  private final String name;
  private final MemorySource<B> source;
  private final long granularity;
  private B block;
  private int allocations;
  private boolean closed;

  GrowOnlyArena(String name, MemorySource<B> source, long initialBytes, long granularity) {
    if (granularity <= 0 || Long.bitCount(granularity) != 1) {
      throw new IllegalArgumentException("arena granularity must be a positive power of two, got " + granularity);
    }
    if (initialBytes < 0) {
      throw new IllegalArgumentException("arena initial size must be >= 0, got " + initialBytes);
    }
    this.name = Objects.requireNonNull(name, "name");
    this.source = Objects.requireNonNull(source, "source");
    this.granularity = granularity;
    if (initialBytes > 0) {
      grow(initialBytes, roundUp(initialBytes));
    }
  }

  /** The block, grown if needed so that it holds at least {@code bytes}. */
  B reserve(long bytes) {
    if (closed) {
      throw new IllegalStateException("arena " + name + " is closed");
    }
    if (bytes < 0) {
      throw new IllegalArgumentException("negative reservation of " + bytes + " bytes in arena " + name);
    }
    if (block == null || block.bytes() < bytes) {
      long current = block == null ? 0 : block.bytes();
      long generous = roundUp(Math.max(bytes, (long) Math.min(Long.MAX_VALUE / 2, Math.ceil(current * GROWTH_FACTOR))));
      long generousFloor = roundUp((long) Math.ceil(bytes * GROWTH_FACTOR));
      grow(bytes, Math.max(generous, generousFloor));
    }
    return block;
  }

  private void grow(long needed, long preferred) {
    if (block != null) {
      block.close();
      block = null;
    }
    try {
      block = source.allocate(preferred, "arena " + name);
    } catch (CudaCallException e) {
      long exact = roundUp(needed);
      if (exact >= preferred) {
        throw e;
      }
      block = source.allocate(exact, "arena " + name + " (exact size after a larger request failed)");
    }
    allocations++;
  }

  private long roundUp(long bytes) {
    long rounded = (Math.max(bytes, 1) + granularity - 1) & -granularity;
    if (rounded < bytes) {
      throw new IllegalArgumentException("arena " + name + " cannot hold " + bytes + " bytes");
    }
    return rounded;
  }

  long capacity() {
    return block == null ? 0 : block.bytes();
  }

  /** How many blocks this arena has allocated over its life: stays flat once batches stop growing. */
  int allocations() {
    return allocations;
  }

  @Override
  public void close() {
    if (!closed) {
      closed = true;
      if (block != null) {
        block.close();
        block = null;
      }
    }
  }
}
