package io.distca.loadtest;

import io.distca.client.BackwardInput;
import io.distca.protocol.tensor.Tensor;
import io.distca.server.backend.AttentionBackend;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;

/**
 * The ceilings a load test's achieved numbers are divided by, measured in the same process: a plain
 * memory copy (what moving the same bytes costs with no protocol, no socket) and the backend's
 * kernel-only throughput on the run's own shapes (no wire, no queue, no rebatching).
 */
final class Ceilings {
  private static final long MIN_COPY_BYTES = 64 << 10;
  private static final long MAX_COPY_BYTES = 256L << 20;

  private Ceilings() {}

  /**
   * Bytes per second of copying a buffer of {@code bytes} (clamped to [64 KiB, 256 MiB]) into
   * another, best of five rounds of at least 50 ms each.
   */
  static double memoryCopyBytesPerSecond(long bytes, BufferAllocator allocator) {
    long n = Math.max(MIN_COPY_BYTES, Math.min(MAX_COPY_BYTES, bytes)) & ~7L;
    try (ArrowBuf src = allocator.buffer(n); ArrowBuf dst = allocator.buffer(n)) {
      for (long i = 0; i < n; i += 8) {
        src.setLong(i, i * 0x9E3779B97F4A7C15L);
      }
      dst.setBytes(0, src, 0, n); // first touch of the destination pages is not a copy cost
      double best = 0;
      for (int round = 0; round < 5; round++) {
        long copies = 0;
        long start = System.nanoTime();
        long elapsed;
        do {
          dst.setBytes(0, src, 0, n);
          copies++;
          elapsed = System.nanoTime() - start;
        } while (elapsed < 50_000_000L);
        best = Math.max(best, copies * (double) n / (elapsed / 1e9));
      }
      if (dst.getLong(n - 8) != src.getLong(n - 8)) {
        throw new IllegalStateException("memory copy check failed");
      }
      return best;
    }
  }

  /**
   * Forward and backward FLOP/s of a backend running whole documents, the better of two rounds (it
   * runs after the load, so the code is warm).
   */
  record KernelRates(double forwardFlopsPerSecond, double backwardFlopsPerSecond) {

    /** The rate at which a mix of forward and backward FLOPs runs: total FLOPs over the time each part takes. */
    double mixed(double forwardFlops, double backwardFlops) {
      double seconds = forwardFlops / forwardFlopsPerSecond
          + (backwardFlops > 0 ? backwardFlops / backwardFlopsPerSecond : 0);
      return seconds > 0 ? (forwardFlops + backwardFlops) / seconds : forwardFlopsPerSecond;
    }
  }

  static KernelRates kernelOnly(AttentionBackend backend, StepInput sample, boolean backward, BufferAllocator allocator) {
    double forwardFlops = sample.forwardFlops;
    long forwardBest = Long.MAX_VALUE;
    long backwardBest = Long.MAX_VALUE;
    for (int round = 0; round < 2; round++) {
      long t0 = System.nanoTime();
      Tensor[] out = LocalReference.forward(backend, sample.batch, allocator);
      long t1 = System.nanoTime();
      try {
        forwardBest = Math.min(forwardBest, t1 - t0);
        if (backward) {
          BackwardInput in = new BackwardInput(sample.batch, out[0], out[1], sample.dO);
          long t2 = System.nanoTime();
          Tensor[] grads = LocalReference.backward(backend, in, allocator);
          long t3 = System.nanoTime();
          for (Tensor g : grads) {
            g.close();
          }
          backwardBest = Math.min(backwardBest, t3 - t2);
        }
      } finally {
        out[0].close();
        out[1].close();
      }
    }
    double fwd = forwardFlops / (forwardBest / 1e9);
    double bwd = backward ? 2.5 * forwardFlops / (backwardBest / 1e9) : fwd;
    return new KernelRates(fwd, bwd);
  }
}
