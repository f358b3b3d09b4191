package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.fail;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.util.ResourceLeakDetector;
import java.util.List;

/**
 * Turns Netty's leak reports (paranoid level, set by the parent pom) into test failures, through
 * {@link RecordingLeakDetector}: {@link #assertNoLeaks()} forces collection and fails on any record.
 */
public final class NettyLeaks {
  private NettyLeaks() {}

  /** Fails fast when the tests run without paranoid detection or without the recording detector. */
  public static void install() {
    if (ResourceLeakDetector.getLevel() != ResourceLeakDetector.Level.PARANOID) {
      throw new IllegalStateException("tests expect -Dio.netty.leakDetection.level=paranoid, got " + ResourceLeakDetector.getLevel());
    }
    PooledByteBufAllocator.DEFAULT.buffer(1).release(); // makes Netty create its ByteBuf leak detector now
    if (!RecordingLeakDetector.active()) {
      throw new IllegalStateException("tests expect -Dio.netty.customResourceLeakDetector=" + RecordingLeakDetector.class.getName()
          + " (set by protocol/pom.xml's surefire configuration)");
    }
  }

  /** Collects garbage, lets the detectors poll their queues, and fails on any reported leak. */
  public static void assertNoLeaks() {
    List<String> leaks = drain();
    if (!leaks.isEmpty()) {
      fail(leaks.size() + " Netty buffer leak(s):\n" + String.join("\n", leaks));
    }
  }

  /** The leaks reported so far after a collection, clearing them. */
  public static List<String> drain() {
    for (int i = 0; i < 3; i++) {
      System.gc();
      try {
        Thread.sleep(5);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
      // A detector reports queued leaks when it tracks the next resource.
      ByteBuf probe = PooledByteBufAllocator.DEFAULT.buffer(1);
      probe.release();
    }
    return RecordingLeakDetector.drain();
  }
}
