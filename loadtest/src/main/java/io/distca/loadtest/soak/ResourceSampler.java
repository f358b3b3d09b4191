package io.distca.loadtest.soak;

import io.netty.util.internal.PlatformDependent;
import java.io.IOException;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * Samples what a leak would grow, in this process: heap in use after a full GC, direct memory
 * (Netty's own counter and the JDK's direct buffer pool), resident set size (everything native,
 * Arrow's buffers included), live threads, and open file descriptors.
 */
public final class ResourceSampler implements AutoCloseable {
  /** One sample. */
  public record Sample(double seconds, long heapBytes, long nettyDirectBytes, long nioDirectBytes, long rssBytes,
      int threads, int fileDescriptors) {}

  private final long intervalMs;
  private final List<Sample> samples = new ArrayList<>();
  private final Thread thread;
  private final long start = System.nanoTime();
  private volatile boolean stop;

  public ResourceSampler(long intervalMs) {
    this.intervalMs = intervalMs;
    this.thread = new Thread(this::loop, "distca-soak-sampler");
    thread.setDaemon(true);
  }

  public ResourceSampler start() {
    thread.start();
    return this;
  }

  private void loop() {
    while (!stop) {
      Sample s = sample((System.nanoTime() - start) / 1e9);
      synchronized (samples) {
        samples.add(s);
      }
      try {
        Thread.sleep(intervalMs);
      } catch (InterruptedException e) {
        return;
      }
    }
  }

  public static Sample sample(double seconds) {
    System.gc(); // heap after a full collection: what is really still referenced
    long heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
    long nio = 0;
    for (BufferPoolMXBean pool : ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class)) {
      if (pool.getName().equals("direct")) {
        nio = pool.getMemoryUsed();
      }
    }
    return new Sample(seconds, heap, Math.max(0, PlatformDependent.usedDirectMemory()), nio, rss(),
        Thread.activeCount(), fileDescriptors());
  }

  private static long rss() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
        if (line.startsWith("VmRSS:")) {
          return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
        }
      }
    } catch (IOException | RuntimeException e) {
      // not Linux: no RSS figure
    }
    return -1;
  }

  private static int fileDescriptors() {
    try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
      return (int) fds.count();
    } catch (IOException e) {
      return -1;
    }
  }

  public List<Sample> samples() {
    synchronized (samples) {
      return new ArrayList<>(samples);
    }
  }

  @Override
  public void close() {
    stop = true;
    thread.interrupt();
    try {
      thread.join(10_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
