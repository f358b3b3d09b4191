package io.distca.protocol.wire;

import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import java.util.Objects;

/**
 * What the decoders emit instead of a {@link Message} when a frame is bad, so that the connection
 * handler can answer with a typed ERROR instead of catching an exception.
 *
 * <p>When {@link #closesConnection()} is true (a framing violation) the byte stream can no longer be
 * trusted: the handler should write {@link #toErrorMessage()}, then close the channel; the
 * {@link FrameDecoder} already discards everything after it. Otherwise only this one frame was
 * bad and the connection stays usable.
 *
 * @param requestId the request id of the bad frame, or 0 when it could not be read (bad magic or
 *     unknown version); 0 marks an ERROR as being about the connection rather than a request
 * @param type the frame's message type, or null when unknown
 * @param error what is wrong, as a typed code plus the offending field or tensor name
 */
public record DecodeFailure(long requestId, MessageType type, ProtocolException error) {
  public DecodeFailure {
    Objects.requireNonNull(error, "error");
  }

  public boolean closesConnection() {
    return error.code().closesConnection();
  }

  /** The ERROR frame that answers this failure, echoing the request id. */
  public Message toErrorMessage() {
    return Message.error(requestId, error);
  }

  @Override
  public String toString() {
    return "DecodeFailure(request " + requestId + (type == null ? "" : ", " + type) + "): " + error.getMessage();
  }
}
