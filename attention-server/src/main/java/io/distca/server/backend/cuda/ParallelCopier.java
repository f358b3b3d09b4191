package io.distca.server.backend.cuda;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.arrow.memory.util.MemoryUtil;

/**
 * Runs a {@link CopyList} on several threads. Staging a fused batch means copying hundreds of MiB
 * between request tensors and pinned memory; one thread moves roughly 10 GB/s, several together
 * approach the memory system's bandwidth, which keeps host copies from dominating the end-to-end time
 * of short-document batches. The caller's thread takes one share of the work itself.
 */
final class ParallelCopier implements AutoCloseable {
  /** Below this many bytes per extra thread a copy list runs on the caller's thread alone. */
  static final long MIN_BYTES_PER_THREAD = 1L << 20;

  private final int threads;
  private final ExecutorService workers;
  private final CopyList.Memcpy memcpy;

  ParallelCopier(int threads) {
    this(threads, MemoryUtil::copyMemory);
  }

  ParallelCopier(int threads, CopyList.Memcpy memcpy) {
    if (threads < 1) {
      throw new IllegalArgumentException("staging copy threads must be >= 1, got " + threads);
    }
    this.threads = threads;
    this.memcpy = memcpy;
    AtomicInteger counter = new AtomicInteger();
    this.workers = threads == 1 ? null : Executors.newFixedThreadPool(threads - 1, r -> {
      Thread t = new Thread(r, "distca-cuda-staging-" + counter.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
  }

  void run(CopyList copies) {
    run(copies, 0, copies.totalBytes());
  }

  /** Runs the bytes [from, to) of the list (see {@link CopyList#copyRange}). */
  void run(CopyList copies, long from, long to) {
    long total = to - from;
    int parts = (int) Math.min(threads, Math.max(1, total / MIN_BYTES_PER_THREAD));
    if (parts == 1) {
      copies.copyRange(from, to, memcpy);
      return;
    }
    List<Future<?>> pending = new ArrayList<>(parts - 1);
    for (int p = 1; p < parts; p++) {
      long partFrom = from + total * p / parts;
      long partTo = from + total * (p + 1) / parts;
      pending.add(workers.submit(() -> copies.copyRange(partFrom, partTo, memcpy)));
    }
    copies.copyRange(from, from + total / parts, memcpy);
    for (Future<?> f : pending) {
      try {
        f.get();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted while staging a batch", e);
      } catch (ExecutionException e) {
        throw new IllegalStateException("staging copy failed", e.getCause());
      }
    }
  }

  @Override
  public void close() {
    if (workers != null) {
      workers.shutdown();
    }
  }
}
