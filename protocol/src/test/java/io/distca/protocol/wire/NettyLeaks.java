package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.fail;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.util.ResourceLeakDetector;
import io.netty.util.ResourceLeakDetectorFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * Turns Netty's leak reports (paranoid level, set by the parent pom) into test failures: a factory
 * installed before the first buffer class initializes gives every detector a listener that records
 * leaks; {@link #assertNoLeaks()} forces collection and fails on any record.
 */
final class NettyLeaks {
  private static final Queue<String> LEAKS = new ConcurrentLinkedQueue<>();

  static {
    ResourceLeakDetectorFactory.setResourceLeakDetectorFactory(new ResourceLeakDetectorFactory() {
      @Override
      public <T> ResourceLeakDetector<T> newResourceLeakDetector(Class<T> resource, int samplingInterval, long maxActive) {
        return listening(new ResourceLeakDetector<T>(resource, samplingInterval));
      }

      @Override
      public <T> ResourceLeakDetector<T> newResourceLeakDetector(Class<T> resource, int samplingInterval) {
        return listening(new ResourceLeakDetector<T>(resource, samplingInterval));
      }
    });
  }

  private NettyLeaks() {}

  private static <T> ResourceLeakDetector<T> listening(ResourceLeakDetector<T> detector) {
    detector.setLeakListener((type, records) -> LEAKS.add(type + ": " + records));
    return detector;
  }

  /** Call before any Netty buffer is created so that the factory is in place. */
  static void install() {
    if (ResourceLeakDetector.getLevel() != ResourceLeakDetector.Level.PARANOID) {
      throw new IllegalStateException("tests expect -Dio.netty.leakDetection.level=paranoid, got " + ResourceLeakDetector.getLevel());
    }
  }

  /** Collects garbage, lets the detectors poll their queues, and fails on any reported leak. */
  static void assertNoLeaks() {
    List<String> leaks = drain();
    if (!leaks.isEmpty()) {
      fail(leaks.size() + " Netty buffer leak(s):\n" + String.join("\n", leaks));
    }
  }

  /** The leaks reported so far after a collection, clearing them. */
  static List<String> drain() {
    for (int i = 0; i < 5; i++) {
      System.gc();
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
      // A detector reports queued leaks when it tracks the next resource.
      ByteBuf probe = PooledByteBufAllocator.DEFAULT.buffer(1);
      probe.release();
    }
    List<String> leaks = new ArrayList<>();
    for (String leak; (leak = LEAKS.poll()) != null; ) {
      leaks.add(leak);
    }
    return leaks;
  }
}
