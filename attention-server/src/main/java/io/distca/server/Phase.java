package io.distca.server;

/** Forward or backward core attention; batches never mix phases. */
public enum Phase {
  FORWARD,
  BACKWARD
}
