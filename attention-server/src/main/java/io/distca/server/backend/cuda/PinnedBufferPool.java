package io.distca.server.backend.cuda;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reusable page-locked host buffers for request frames and response tensors, so that the GPU copies
 * straight from and to them (no host staging copy). Pinned allocation of hundreds of MiB takes
 * milliseconds to tens of milliseconds, so buffers are never freed while the pool runs: a released
 * buffer goes back to the free list of its size class and serves the next request of that class.
 *
 * <p><b>Size classes.</b> A request is rounded up to {@code m * 2^e} with m in {4, 5, 6, 7} (at least
 * {@link #MIN_CLASS_BYTES}): at most 25% waste, few classes. A request is served from its class's free
 * list, else from a free buffer of a larger class of at most twice its size, else by allocating a
 * new buffer while the pool's bytes stay under the cap, else (at the cap) by freeing idle buffers of
 * other classes to make room. When none of that works the request is a miss and the caller falls
 * back to ordinary memory: the pool never waits.
 *
 * <p><b>Regions.</b> {@link #contains} says in O(log n) whether an address range lies inside one
 * buffer of the pool (in use or idle): that is the test for "the GPU may copy this directly".
 *
 * <p><b>Ownership.</b> {@link #acquire} hands out a {@link Lease}; {@link Lease#release()} (idempotent)
 * returns the buffer. The caller releases only after every DMA that touches the buffer completed.
 * {@link #close()} frees the idle buffers at once; buffers still leased are freed when released, and
 * {@code onDrained} runs once the last one is (the CUDA context must outlive them). Thread-safe.
 */
final class PinnedBufferPool {
  static final long MIN_CLASS_BYTES = 1L << 20;

  private static final Logger LOG = LoggerFactory.getLogger(PinnedBufferPool.class);

  private final String name;
  private final MemorySource<? extends MemoryBlock> source;
  private final long capBytes;
  /** Idle buffers by class size. Guarded by this. */
  private final TreeMap<Long, ArrayDeque<MemoryBlock>> idle = new TreeMap<>();
  /** Every live buffer (leased or idle) by address, for {@link #contains}. */
  private final ConcurrentSkipListMap<Long, MemoryBlock> regions = new ConcurrentSkipListMap<>();
  private final Runnable onDrained;
  /** Bytes of live buffers plus bytes being allocated. Guarded by this. */
  private long reservedBytes;
  private long idleBytes;
  private int leased;
  private boolean closed;
  private boolean drainedRun;
  private final AtomicLong hits = new AtomicLong();
  private final AtomicLong misses = new AtomicLong();
  private final AtomicLong allocations = new AtomicLong();
  private final AtomicLong evictions = new AtomicLong();
  private final AtomicLong allocationFailures = new AtomicLong();

  /**
   * @param source where buffers come from (cuMemHostAlloc in production; plain memory in tests)
   * @param capBytes most bytes the pool holds (leased and idle), > 0
   * @param onDrained runs once after {@link #close()} when no buffer is leased any more (may be null)
   */
  PinnedBufferPool(String name, MemorySource<? extends MemoryBlock> source, long capBytes, Runnable onDrained) {
    if (capBytes <= 0) {
      throw new IllegalArgumentException("pinned pool cap must be > 0 bytes, got " + capBytes);
    }
    this.name = Objects.requireNonNull(name, "name");
    this.source = Objects.requireNonNull(source, "source");
    this.capBytes = capBytes;
    this.onDrained = onDrained;
  }

  /** The size class of a request of {@code bytes}: m * 2^e, m in {4, 5, 6, 7}, at least {@link #MIN_CLASS_BYTES}. */
  static long classBytes(long bytes) {
    if (bytes <= MIN_CLASS_BYTES) {
      return MIN_CLASS_BYTES;
    }
    int top = 63 - Long.numberOfLeadingZeros(bytes - 1); // 2^top < bytes <= 2^(top + 1)
    long step = 1L << (top - 2);                         // quarters of 2^top: 5/4, 6/4, 7/4, 8/4 of it
    long rounded = (bytes + step - 1) / step * step;
    if (rounded < bytes) {
      throw new IllegalArgumentException("pinned buffer of " + bytes + " bytes is too large");
    }
    return rounded;
  }

  /**
   * A buffer of at least {@code bytes}, or null when the pool cannot serve without waiting (counted as
   * a miss). May allocate (slow) while the pool grows towards its cap; never once warm.
   */
  Lease acquire(long bytes) {
    if (bytes <= 0) {
      throw new IllegalArgumentException("pinned buffer request of " + bytes + " bytes");
    }
    long size = classBytes(bytes);
    List<MemoryBlock> toFree = new ArrayList<>();
    boolean allocate;
    synchronized (this) {
      if (closed) {
        misses.incrementAndGet();
        return null;
      }
      MemoryBlock reused = takeIdle(size);
      if (reused != null) {
        hits.incrementAndGet();
        return new Lease(reused);
      }
      if (size > capBytes) {
        misses.incrementAndGet();
        return null;
      }
      // At the cap: idle buffers of other classes make room (smallest first).
      while (reservedBytes + size > capBytes && idleBytes > 0) {
        toFree.add(evictSmallestIdle());
      }
      allocate = reservedBytes + size <= capBytes;
      if (allocate) {
        reservedBytes += size;
        leased++;
      } else {
        misses.incrementAndGet();
      }
    }
    freeAll(toFree);
    if (!allocate) {
      return null;
    }
    MemoryBlock block;
    try {
      block = source.allocate(size, "pinned buffer of pool " + name);
    } catch (RuntimeException e) {
      allocationFailures.incrementAndGet();
      misses.incrementAndGet();
      LOG.warn("pinned pool {}: allocating {} bytes failed ({}); falling back to ordinary memory", name, size, e.toString());
      synchronized (this) {
        reservedBytes -= size;
        leased--;
      }
      runIfDrained();
      return null;
    }
    allocations.incrementAndGet();
    regions.put(block.address(), block);
    return new Lease(block);
  }

  /** Whether [address, address + bytes) lies inside one buffer of the pool. */
  boolean contains(long address, long bytes) {
    Map.Entry<Long, MemoryBlock> e = regions.floorEntry(address);
    if (e == null || bytes < 0) {
      return false;
    }
    MemoryBlock b = e.getValue();
    return address - b.address() + bytes <= b.bytes();
  }

  private MemoryBlock takeIdle(long size) {
    // Its own class, else the next classes up to twice the size.
    for (Map.Entry<Long, ArrayDeque<MemoryBlock>> e : idle.subMap(size, true, 2 * size, true).entrySet()) {
      MemoryBlock b = e.getValue().pollLast();
      if (b != null) {
        idleBytes -= b.bytes();
        if (e.getValue().isEmpty()) {
          idle.remove(e.getKey());
        }
        leased++;
        return b;
      }
    }
    return null;
  }

  private MemoryBlock evictSmallestIdle() {
    Map.Entry<Long, ArrayDeque<MemoryBlock>> e = idle.firstEntry();
    MemoryBlock b = e.getValue().pollLast();
    if (e.getValue().isEmpty()) {
      idle.remove(e.getKey());
    }
    idleBytes -= b.bytes();
    reservedBytes -= b.bytes();
    regions.remove(b.address());
    evictions.incrementAndGet();
    return b;
  }

  private void giveBack(MemoryBlock block) {
    boolean free;
    synchronized (this) {
      leased--;
      free = closed;
      if (free) {
        reservedBytes -= block.bytes();
        regions.remove(block.address());
      } else {
        idle.computeIfAbsent(block.bytes(), k -> new ArrayDeque<>()).addLast(block);
        idleBytes += block.bytes();
      }
    }
    if (free) {
      freeAll(List.of(block));
      runIfDrained();
    }
  }

  private void freeAll(List<MemoryBlock> blocks) {
    for (MemoryBlock b : blocks) {
      try {
        b.close();
      } catch (RuntimeException e) {
        LOG.error("pinned pool {}: freeing a buffer of {} bytes failed", name, b.bytes(), e);
      }
    }
  }

  private void runIfDrained() {
    boolean run;
    synchronized (this) {
      run = closed && leased == 0 && !drainedRun;
      if (run) {
        drainedRun = true;
      }
    }
    if (run && onDrained != null) {
      onDrained.run();
    }
  }

  /**
   * Stops serving, frees every idle buffer now and every leased one when it is released; runs
   * {@code onDrained} once nothing is leased (now, or from the thread of the last release).
   * Idempotent.
   *
   * @return buffers still leased (0 when everything came back)
   */
  int close() {
    List<MemoryBlock> toFree = new ArrayList<>();
    int stillLeased;
    synchronized (this) {
      if (!closed) {
        closed = true;
        while (idleBytes > 0) {
          toFree.add(evictSmallestIdle());
        }
        evictions.addAndGet(-toFree.size()); // closing is not eviction
      }
      stillLeased = leased;
    }
    freeAll(toFree);
    runIfDrained();
    return stillLeased;
  }

  /** Bytes of pinned memory the pool holds (leased and idle). */
  synchronized long bytes() {
    return reservedBytes;
  }

  synchronized long idleBytes() {
    return idleBytes;
  }

  synchronized int leased() {
    return leased;
  }

  long capBytes() {
    return capBytes;
  }

  /** Requests served by a buffer that was already allocated. */
  long hits() {
    return hits.get();
  }

  /** Requests the pool could not serve (the caller fell back to ordinary memory). */
  long misses() {
    return misses.get();
  }

  /** Buffers allocated over the pool's life: flat once warm. */
  long allocations() {
    return allocations.get();
  }

  /** Idle buffers freed to make room for another size class. */
  long evictions() {
    return evictions.get();
  }

  long allocationFailures() {
    return allocationFailures.get();
  }

  @Override
  public String toString() {
    return "PinnedBufferPool(" + name + ", " + bytes() + " of " + capBytes + " bytes, " + leased() + " leased)";
  }

  /** One leased buffer: {@link #address()} holds at least the bytes asked for. */
  final class Lease {
    private final MemoryBlock block;
    private final AtomicBoolean released = new AtomicBoolean();

    private Lease(MemoryBlock block) {
      this.block = block;
    }

    long address() {
      return block.address();
    }

    /** The buffer's size (its size class, at least the bytes asked for). */
    long bytes() {
      return block.bytes();
    }

    /** Returns the buffer to the pool (or frees it once the pool is closed); later calls do nothing. */
    void release() {
      if (released.compareAndSet(false, true)) {
        giveBack(block);
      }
    }
  }
}
