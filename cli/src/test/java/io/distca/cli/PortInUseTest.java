package io.distca.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/**
 * A server started on a port another process holds (a second server on one host with the same data
 * or admin port): one line naming the port, exit 1, no stack trace.
 */
class PortInUseTest {

  private static String failedStart(String... args) {
    StringWriter err = new StringWriter();
    CommandLine cli = Distca.commandLine().setErr(new PrintWriter(err));
    assertEquals(1, cli.execute(args), err.toString());
    assertFalse(err.toString().contains("\tat "), "no stack trace: " + err);
    return err.toString();
  }

  @Test
  void aDataPortInUseIsNamed() throws Exception {
    try (ServerSocket taken = new ServerSocket()) {
      taken.bind(new InetSocketAddress("0.0.0.0", 0));
      int port = taken.getLocalPort();
      String err = failedStart("server", "--backend", "cpu", "--threads", "1", "--port", String.valueOf(port),
          "--admin-port", "-1");
      assertTrue(err.startsWith("distca server: cannot open the data port 0.0.0.0:" + port + ": "), err);
    }
  }

  @Test
  void anAdminPortInUseIsNamed() throws Exception {
    try (ServerSocket taken = new ServerSocket()) {
      taken.bind(new InetSocketAddress("0.0.0.0", 0));
      int port = taken.getLocalPort();
      String err = failedStart("server", "--backend", "cpu", "--threads", "1", "--port", "0", "--admin-port",
          String.valueOf(port));
      assertTrue(err.startsWith("distca server: cannot open the admin port 0.0.0.0:" + port + ": "), err);
    }
  }
}
