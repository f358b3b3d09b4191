package io.distca.server.backend.cpu;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The backend's own threads. A call hands over a list of work units already sorted longest first;
 * workers take the next unit from a shared counter, so long units start early and short ones fill
 * the tail. The caller waits for every worker even when one fails or the caller is interrupted,
 * because workers write into the caller's tensors, which must not be released under them.
 */
final class WorkerPool implements AutoCloseable {
  /** One unit of work, run with the calling worker's scratch. */
  interface UnitBody {
    void run(int unit, Scratch scratch);
  }

  private final ExecutorService executor;
  private final int threads;
  private final ThreadLocal<Scratch> scratch = ThreadLocal.withInitial(Scratch::new);
  private volatile boolean closed;

  WorkerPool(int threads, String threadNamePrefix) {
    this.threads = threads;
    AtomicInteger counter = new AtomicInteger();
    this.executor = Executors.newFixedThreadPool(threads, runnable -> {
      Thread t = new Thread(runnable, threadNamePrefix + counter.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
  }

  int threads() {
    return threads;
  }

  /** Runs units {@code [0, units)}; returns when all are done, rethrowing the first failure. */
  void runAll(int units, UnitBody body) {
    if (closed) {
      throw new IllegalStateException("cpu attention backend is closed");
    }
    if (units == 0) {
      return;
    }
    AtomicInteger next = new AtomicInteger();
    AtomicReference<Throwable> failure = new AtomicReference<>();
    Runnable worker = () -> {
      Scratch mine = scratch.get();
      int unit;
      while (failure.get() == null && (unit = next.getAndIncrement()) < units) {
        try {
          body.run(unit, mine);
        } catch (Throwable t) {
          failure.compareAndSet(null, t);
        }
      }
    };
    List<Future<?>> running = new ArrayList<>();
    try {
      for (int w = Math.min(threads, units); w > 0; w--) {
        running.add(executor.submit(worker));
      }
    } catch (RejectedExecutionException e) {
      failure.compareAndSet(null, new IllegalStateException("cpu attention backend is closed", e));
    }
    boolean interrupted = awaitAll(running, failure);
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
    Throwable t = failure.get();
    if (t instanceof RuntimeException) {
      throw (RuntimeException) t;
    }
    if (t instanceof Error) {
      throw (Error) t;
    }
    if (t != null) {
      throw new IllegalStateException("attention work unit failed", t);
    }
  }

  private static boolean awaitAll(List<Future<?>> running, AtomicReference<Throwable> failure) {
    boolean interrupted = false;
    for (Future<?> f : running) {
      while (true) {
        try {
          f.get();
          break;
        } catch (InterruptedException e) {
          interrupted = true;
          failure.compareAndSet(null, new IllegalStateException("interrupted while attention ran", e));
        } catch (ExecutionException e) {
          failure.compareAndSet(null, e.getCause());
          break;
        }
      }
    }
    return interrupted;
  }

  /** Lets running calls finish (bounded wait), then stops the threads. Idempotent. */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    executor.shutdown();
    try {
      if (!executor.awaitTermination(30, TimeUnit.SECONDS)) {
        executor.shutdownNow();
      }
    } catch (InterruptedException e) {
      executor.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }
}
