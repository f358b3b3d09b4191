package io.distca.protocol.testkit;

/**
 * Runs a fuzz loop on a fresh thread. Every bad frame makes exceptions (Jackson's, the typed
 * protocol errors), and paranoid leak detection records a stack trace per buffer access: filling in
 * a stack trace costs in proportion to the stack's depth, and JUnit's is about 70 frames deep. On a
 * thread of its own the loop runs about twice as fast.
 */
public final class ShallowStack {
  private ShallowStack() {}

  /** A body that may throw anything, rethrown to the caller (assertion errors included). */
  public interface Body {
    void run() throws Exception;
  }

  public static void run(String name, Body body) throws Exception {
    Throwable[] failure = new Throwable[1];
    Thread thread = new Thread(() -> {
      try {
        body.run();
      } catch (Throwable e) {
        failure[0] = e;
      }
    }, name);
    thread.start();
    thread.join();
    if (failure[0] instanceof Exception e) {
      throw e;
    }
    if (failure[0] instanceof Error e) {
      throw e;
    }
  }
}
