package io.distca.protocol.transport;

import io.distca.protocol.message.Message;

/** Serves the messages a peer sends after its HELLO was accepted. */
public interface RequestHandler {

  /**
   * Handles one message; takes ownership of it (close it, or hand it on). Throwing a
   * {@link io.distca.protocol.message.ProtocolException} answers the request with that typed error.
   */
  void handle(Message message, Responder responder);

  /** Called once when a connection closes, e.g. to forget a server's registration channel. */
  default void connectionClosed(Responder responder) {}
}
