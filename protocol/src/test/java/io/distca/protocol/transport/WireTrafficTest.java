package io.distca.protocol.transport;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.Message;
import io.distca.protocol.message.Ping;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.wire.WireSetup;
import io.netty.buffer.ByteBuf;
import io.netty.channel.embedded.EmbeddedChannel;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

class WireTrafficTest {
  @Test
  void countsFrameBytesBothWaysAndErrorsByCode() {
    WireTraffic traffic = new WireTraffic();
    try (BufferAllocator allocator = new RootAllocator()) {
      EmbeddedChannel server = new EmbeddedChannel();
      traffic.counting(WireSetup.server(allocator, 1 << 20)).accept(server.pipeline());
      EmbeddedChannel client = new EmbeddedChannel();
      WireSetup.client(allocator).accept(client.pipeline());

      client.writeOutbound(Message.of(MessageType.PING, 7, new Ping(123)));
      ByteBuf frame = client.readOutbound();
      int frameBytes = frame.readableBytes();
      server.writeInbound(frame);
      Message received = server.readInbound();
      received.close();
      assertEquals(frameBytes, traffic.bytesReceived());

      server.writeOutbound(Message.error(7, new ProtocolException(ErrorCode.OVERLOADED, null, "busy", 10, null)));
      server.writeOutbound(Message.error(8, new ProtocolException(ErrorCode.OVERLOADED, null, "busy", 10, null)));
      long sent = 0;
      for (ByteBuf b; (b = server.readOutbound()) != null; ) {
        sent += b.readableBytes();
        b.release();
      }
      assertEquals(sent, traffic.bytesSent());
      assertEquals(2, traffic.errorsSent(ErrorCode.OVERLOADED));
      assertEquals(0, traffic.errorsSent(ErrorCode.DRAINING));
      assertEquals(1, traffic.connectionsOpened());
      server.finishAndReleaseAll();
      client.finishAndReleaseAll();
    }
  }
}
