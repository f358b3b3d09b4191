package io.distca.cli.faults;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One DistCA service as a real OS process ({@code java ... io.distca.cli.Distca server|dispatcher}),
 * started with the test's own classpath, so that faults are real: SIGKILL, SIGSTOP, SIGCONT.
 */
final class ServiceProcess implements AutoCloseable {
  private static final Pattern LISTENING = Pattern.compile("listening on [^:]+:(\\d+)");

  private final String name;
  private final Process process;
  private final CompletableFuture<Integer> port = new CompletableFuture<>();
  private final List<String> output = new ArrayList<>();
  private final Thread reader;

  private ServiceProcess(String name, List<String> args) throws IOException {
    this.name = name;
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    cmd.add("--add-opens=java.base/java.nio=ALL-UNNAMED");
    cmd.add("-Dio.netty.tryReflectionSetAccessible=true");
    cmd.add("-Xmx512m");
    cmd.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=info");
    cmd.add("-cp");
    cmd.add(classpath());
    cmd.add("io.distca.cli.Distca");
    cmd.addAll(args);
    this.process = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    this.reader = new Thread(this::pump, name + "-output");
    reader.setDaemon(true);
    reader.start();
  }

  static ServiceProcess dispatcher(int port) throws IOException {
    return new ServiceProcess("dispatcher", List.of("dispatcher", "--host", "127.0.0.1", "--port", String.valueOf(port),
        "--heartbeat-ms", "200", "--dead-after-ms", "1000", "--gather-ms", "3000", "--admin-port", "0"));
  }

  static ServiceProcess server(String id, int dispatcherPort, int advertisedPort) throws IOException {
    return serverOnPort(id, dispatcherPort, 0, advertisedPort);
  }

  static ServiceProcess serverOnPort(String id, int dispatcherPort, int port, int advertisedPort) throws IOException {
    List<String> args = new ArrayList<>(List.of("server", "--host", "127.0.0.1", "--port", String.valueOf(port), "--id", id,
        "--dispatcher", "127.0.0.1:" + dispatcherPort, "--backend", "cpu", "--threads", "1", "--admin-port", "0"));
    if (advertisedPort > 0) {
      args.add("--advertise-port");
      args.add(String.valueOf(advertisedPort));
    }
    return new ServiceProcess(id, args);
  }

  /** The test JVM's real classpath (Surefire hands the forked JVM a manifest-only jar otherwise). */
  private static String classpath() {
    String cp = System.getProperty("surefire.test.class.path");
    return cp != null && !cp.isEmpty() ? cp : System.getProperty("java.class.path");
  }

  private void pump() {
    try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
      String line;
      while ((line = r.readLine()) != null) {
        synchronized (output) {
          output.add(line);
        }
        Matcher m = LISTENING.matcher(line);
        if (!port.isDone() && m.find()) {
          port.complete(Integer.parseInt(m.group(1)));
        }
      }
    } catch (IOException e) {
      // the process went away; its exit is observed elsewhere
    }
    port.completeExceptionally(new IllegalStateException(name + " exited before listening:\n" + log()));
  }

  int port() throws Exception {
    try {
      return port.get(60, TimeUnit.SECONDS);
    } catch (java.util.concurrent.TimeoutException e) {
      throw new IllegalStateException(name + " printed no 'listening on' within 60 s:\n" + log(), e);
    }
  }

  /** Waits until the process printed a line containing {@code text}. */
  void awaitLine(String text, long timeoutMs) throws InterruptedException {
    long until = System.currentTimeMillis() + timeoutMs;
    while (!log().contains(text)) {
      if (System.currentTimeMillis() > until || !process.isAlive()) {
        throw new IllegalStateException(name + " never printed '" + text + "':\n" + log());
      }
      Thread.sleep(20);
    }
  }

  long pid() {
    return process.pid();
  }

  String log() {
    synchronized (output) {
      return String.join("\n", output);
    }
  }

  void kill() throws InterruptedException {
    process.destroyForcibly();
    process.waitFor(10, TimeUnit.SECONDS);
  }

  /**
   * SIGTERM: the service drains and exits on its own. Sent with kill(1), not Process.destroy(),
   * which also closes the process's output pipe so that what it prints while draining is lost.
   */
  void terminate() throws Exception {
    signal("TERM");
  }

  /** Waits for the process to exit and for everything it printed to be read. */
  boolean exitedWithin(long ms) throws InterruptedException {
    boolean exited = process.waitFor(ms, TimeUnit.MILLISECONDS);
    if (exited) {
      reader.join(5_000);
    }
    return exited;
  }

  void stop() throws Exception {
    signal("STOP");
  }

  void resume() throws Exception {
    signal("CONT");
  }

  private void signal(String sig) throws Exception {
    Process p = new ProcessBuilder("kill", "-" + sig, String.valueOf(process.pid())).inheritIO().start();
    if (p.waitFor() != 0) {
      throw new IllegalStateException("kill -" + sig + " " + process.pid() + " failed");
    }
  }

  @Override
  public void close() throws Exception {
    if (process.isAlive()) {
      try {
        signal("CONT"); // a stopped process cannot act on SIGTERM
      } catch (IllegalStateException e) {
        if (process.waitFor(1, TimeUnit.SECONDS)) {
          return; // it exited between the check and the signal: nothing to stop (and a failure that
                  // made it exit stays the one the test reports, not this)
        }
        throw e;
      }
      process.destroy();
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
      }
    }
  }
}
