package io.distca.server;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ProtocolException;
import io.distca.server.PreparedRequest.BatchKey;
import io.distca.server.PreparedRequest.BatchStats;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.AttentionBatch;
import io.distca.server.backend.KvSegment;
import io.distca.server.backend.QuerySlice;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Fuses CA-tasks of different requests (and clients) into one backend call. The oldest queued
 * request decides the batch key (phase and shape); every queued request with that key joins, in
 * arrival order, until the token or request limit; if the batch is still small the thread waits up
 * to the batch window for more. Results are already in each request's own output tensors (the
 * slices view them), so splitting a batch back means only completing each request's future.
 *
 * <p>The queue is bounded upstream by {@link Admission}: only admitted requests reach it.
 */
final class Rebatcher implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Rebatcher.class);

  /** Settings with their defaults; {@link #conclude()} validates. */
  static final class Options {
    long batchWindowNanos = TimeUnit.MICROSECONDS.toNanos(500);
    long maxBatchQueryTokens = 65_536;
    int maxBatchRequests = 64;
    /** Told about every batch that ran (metrics); must be quick, it runs on the batch thread. */
    BatchListener listener = BatchListener.NONE;

    Options conclude() {
      if (batchWindowNanos < 0) {
        throw new IllegalArgumentException("batch window must be >= 0");
      }
      if (maxBatchQueryTokens <= 0 || maxBatchRequests <= 0) {
        throw new IllegalArgumentException("batch limits must be positive");
      }
      return this;
    }
  }

  /** Hears about each batch the backend ran. */
  interface BatchListener {
    BatchListener NONE = (phase, requests, queryTokens, computeNanos) -> {};

    void batchRan(Phase phase, int requests, long queryTokens, long computeNanos);
  }

  private final AttentionBackend backend;
  private final Options options;
  private final ReentrantLock lock = new ReentrantLock();
  private final Condition arrived = lock.newCondition();
  private final ArrayDeque<PreparedRequest> queue = new ArrayDeque<>();
  private final Thread worker;
  private boolean closed;

  private final java.util.concurrent.atomic.AtomicLong batches = new java.util.concurrent.atomic.AtomicLong();
  private final java.util.concurrent.atomic.AtomicLong fusedRequests = new java.util.concurrent.atomic.AtomicLong();

  Rebatcher(AttentionBackend backend, Options options) {
    this.backend = backend;
    this.options = options.conclude();
    this.worker = new Thread(this::run, "distca-rebatcher");
    this.worker.setDaemon(true);
    this.worker.start();
  }

  /**
   * Queues a request. On refusal (shutdown) the request's future fails with a typed error; the
   * caller still owns and closes the request either way.
   */
  void offer(PreparedRequest request) {
    lock.lock();
    try {
      if (closed) {
        request.done.completeExceptionally(new ProtocolException(ErrorCode.DRAINING, null, "server is shutting down"));
        return;
      }
      queue.addLast(request);
      arrived.signal();
    } finally {
      lock.unlock();
    }
  }

  /** Tasks (query slices) of the queued requests. */
  int queuedTasks() {
    lock.lock();
    try {
      int n = 0;
      for (PreparedRequest r : queue) {
        n += r.slices.size();
      }
      return n;
    } finally {
      lock.unlock();
    }
  }

  long batches() {
    return batches.get();
  }

  long fusedRequests() {
    return fusedRequests.get();
  }

  private void run() {
    while (true) {
      List<PreparedRequest> batch;
      try {
        batch = nextBatch();
      } catch (InterruptedException e) {
        return;
      }
      if (batch == null) {
        return;
      }
      execute(batch);
    }
  }

  /** Blocks for the next batch; null once closed and drained. */
  private List<PreparedRequest> nextBatch() throws InterruptedException {
    lock.lock();
    try {
      while (queue.isEmpty()) {
        if (closed) {
          return null;
        }
        arrived.await();
      }
      BatchKey key = queue.peekFirst().batchKey();
      long windowEnd = System.nanoTime() + options.batchWindowNanos;
      List<PreparedRequest> batch = new ArrayList<>();
      long tokens = 0;
      while (true) {
        for (Iterator<PreparedRequest> it = queue.iterator(); it.hasNext(); ) {
          PreparedRequest r = it.next();
          if (batch.size() >= options.maxBatchRequests) {
            break;
          }
          if (!r.batchKey().equals(key)) {
            continue;
          }
          if (!batch.isEmpty() && tokens + r.queryTokens > options.maxBatchQueryTokens) {
            break;
          }
          it.remove();
          batch.add(r);
          tokens += r.queryTokens;
        }
        boolean full = batch.size() >= options.maxBatchRequests || tokens >= options.maxBatchQueryTokens;
        long left = windowEnd - System.nanoTime();
        if (full || closed || left <= 0) {
          return batch;
        }
        arrived.awaitNanos(left);
      }
    } finally {
      lock.unlock();
    }
  }

  private void execute(List<PreparedRequest> requests) {
    long start = System.nanoTime();
    long now = System.currentTimeMillis();
    List<PreparedRequest> live = new ArrayList<>(requests.size());
    for (PreparedRequest r : requests) {
      if (r.meta.deadlineEpochMs() > 0 && r.meta.deadlineEpochMs() < now) {
        r.done.completeExceptionally(new ProtocolException(ErrorCode.DEADLINE_EXCEEDED, "deadline_epoch_ms",
            "deadline passed " + (now - r.meta.deadlineEpochMs()) + " ms before the batch started"));
      } else {
        live.add(r);
      }
    }
    if (live.isEmpty()) {
      return;
    }
    PreparedRequest first = live.get(0);
    List<KvSegment> segments = new ArrayList<>();
    List<QuerySlice> slices = new ArrayList<>();
    double flops = 0;
    for (PreparedRequest r : live) {
      int base = segments.size();
      segments.addAll(r.segments);
      for (QuerySlice s : r.slices) {
        slices.add(base == 0 ? s : new QuerySlice(s.segment() + base, s.kvStart(), s.kvLen(), s.causal(), s.diagonal(),
            s.q(), s.o(), s.lse(), s.delta(), s.dO(), s.dq()));
      }
      flops += r.flops;
    }
    AttentionBatch batch = new AttentionBatch(first.shape, segments, slices);
    double batchFlops = flops;
    java.util.concurrent.CompletableFuture<?> running;
    try {
      // a pipelining backend returns at once, so the next batch is formed (and its copy-in
      // started) while this one computes; a synchronous backend runs it right here
      running = first.phase == Phase.FORWARD ? backend.submitForward(batch) : backend.submitBackward(batch);
    } catch (RuntimeException | Error e) {
      running = java.util.concurrent.CompletableFuture.failedFuture(e);
    }
    running.whenComplete((ignored, err) -> finish(live, first.phase, batch, slices.size(), batchFlops, start, err));
  }

  /**
   * Completes every request of a batch. Runs on whichever thread finished the batch (the CUDA
   * backend's completion thread, or this one); an exception escaping here would be swallowed by the
   * future and leave requests unanswered, so each request is completed before anything else can
   * throw, and the metrics listener cannot break it.
   */
  private void finish(List<PreparedRequest> live, Phase phase, AttentionBatch batch, int sliceCount, double batchFlops,
      long start, Throwable err) {
    if (err != null) {
      Throwable e = err instanceof java.util.concurrent.CompletionException && err.getCause() != null ? err.getCause() : err;
      LOG.error("backend {} failed on a batch of {} requests", backend.name(), live.size(), e);
      for (PreparedRequest r : live) {
        r.done.completeExceptionally(e instanceof ProtocolException pe ? pe : new ProtocolException(ErrorCode.INTERNAL,
            null, "backend " + backend.name() + " failed: " + e, 0, e));
      }
      return;
    }
    long computeNanos = System.nanoTime() - start;
    batches.incrementAndGet();
    if (live.size() > 1) {
      fusedRequests.addAndGet(live.size());
    }
    for (PreparedRequest r : live) {
      try {
        r.done.complete(new BatchStats(start - r.admittedNanos, computeNanos, live.size(), sliceCount, batchFlops));
      } catch (RuntimeException e) {
        LOG.error("answering a request of a finished batch failed", e);
      }
    }
    try {
      options.listener.batchRan(phase, live.size(), batch.queryTokens(), computeNanos);
    } catch (RuntimeException e) {
      LOG.warn("batch listener failed", e);
    }
  }

  /** Stops taking requests; queued ones still run. Waits for the worker up to {@code timeoutMs}. */
  boolean drain(long timeoutMs) throws InterruptedException {
    lock.lock();
    try {
      closed = true;
      arrived.signalAll();
    } finally {
      lock.unlock();
    }
    worker.join(timeoutMs);
    return !worker.isAlive();
  }

  @Override
  public void close() {
    try {
      if (!drain(30_000)) {
        worker.interrupt();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      worker.interrupt();
    }
    lock.lock();
    try {
      for (PreparedRequest r : queue) {
        r.done.completeExceptionally(new ProtocolException(ErrorCode.DRAINING, null, "server closed"));
      }
      queue.clear();
    } finally {
      lock.unlock();
    }
  }
}
