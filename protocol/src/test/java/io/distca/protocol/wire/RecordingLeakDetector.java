package io.distca.protocol.wire;

import io.netty.util.ResourceLeakDetector;
import java.util.ArrayList;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * Netty's leak detector, plus a record of every leak it reports so that tests can fail on them.
 * The module's surefire configuration names it in {@code io.netty.customResourceLeakDetector}, so
 * Netty uses it from the first buffer on, whatever test class runs first.
 */
public final class RecordingLeakDetector<T> extends ResourceLeakDetector<T> {
  private static final Queue<String> LEAKS = new ConcurrentLinkedQueue<>();
  private static volatile boolean active;

  public RecordingLeakDetector(Class<?> resourceType, int samplingInterval) {
    super(resourceType, samplingInterval);
    active = true;
    setLeakListener((type, records) -> LEAKS.add(type + ": " + records));
  }

  /** Whether Netty created a detector of this class (false when the system property was not set). */
  static boolean active() {
    return active;
  }

  static List<String> drain() {
    List<String> leaks = new ArrayList<>();
    for (String leak; (leak = LEAKS.poll()) != null; ) {
      leaks.add(leak);
    }
    return leaks;
  }
}
