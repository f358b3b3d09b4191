package io.distca.cli;

/** A parsed {@code host:port} option value. */
record HostPort(String host, int port) {
  static HostPort parse(String value, int defaultPort) {
    int colon = value.lastIndexOf(':');
    if (colon < 0) {
      return new HostPort(value, defaultPort);
    }
    try {
      int port = Integer.parseInt(value.substring(colon + 1));
      if (port <= 0 || port > 65535) {
        throw new NumberFormatException();
      }
      return new HostPort(value.substring(0, colon), port);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("'" + value + "' is not host:port");
    }
  }
}
