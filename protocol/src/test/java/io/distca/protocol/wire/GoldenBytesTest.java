package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.Message;
import io.distca.protocol.message.MessageType;
import io.distca.protocol.message.Ping;
import io.distca.protocol.tensor.DType;
import io.distca.protocol.tensor.TensorSet;
import io.netty.buffer.ByteBufUtil;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Pins the exact bytes the encoder writes against the dump in docs/protocol.md, so neither drifts alone. */
class GoldenBytesTest extends WireTestBase {
  private static final Path SPEC = Path.of("..", "docs", "protocol.md");

  /** The hex bytes of the fenced block {@code ```golden-NAME} (offset column and '#' comments dropped). */
  static byte[] goldenBlock(String name) throws IOException {
    List<String> lines = Files.readAllLines(SPEC, StandardCharsets.UTF_8);
    int start = lines.indexOf("```golden-" + name);
    assertTrue(start >= 0, SPEC + " has no ```golden-" + name + " block");
    StringBuilder hex = new StringBuilder();
    for (int i = start + 1; !lines.get(i).equals("```"); i++) {
      String line = lines.get(i);
      int comment = line.indexOf('#');
      String[] tokens = (comment < 0 ? line : line.substring(0, comment)).trim().split("\\s+");
      for (int t = 1; t < tokens.length; t++) {
        hex.append(tokens[t]);
      }
    }
    return ByteBufUtil.decodeHexDump(hex);
  }

  @Test
  void pingFrameMatchesTheSpecification() throws IOException {
    byte[] frame = encode(Message.of(MessageType.PING, 0x0102030405060708L, new Ping(42)));
    assertEquals(ByteBufUtil.hexDump(goldenBlock("ping")), ByteBufUtil.hexDump(frame));
  }

  @Test
  void specifiedPingFrameDecodes() throws IOException {
    try (Message ping = decodeMessage(goldenBlock("ping"))) {
      assertEquals(MessageType.PING, ping.type());
      assertEquals(0x0102030405060708L, ping.requestId());
      assertEquals(new Ping(42), ping.meta());
    }
  }

  @Test
  void tensorFrameHeaderAndBodyLayout() {
    TensorSet set = new TensorSet()
        .put("o", patternTensor(allocator, DType.BF16, 1, 1, 3))
        .put("lse", patternTensor(allocator, DType.FP32, 2, 1, 1));
    byte[] frame = encode(Message.of(MessageType.FORWARD_RESPONSE, -2L, Samples.meta(MessageType.FORWARD_RESPONSE), set));
    ByteBuffer header = ByteBuffer.wrap(frame);
    assertEquals(0x44434131, header.getInt(0));
    assertEquals(1, frame[4]);
    assertEquals(17, frame[5]);
    assertEquals(1, header.getShort(6), "payload-present flag");
    assertEquals(-2L, header.getLong(8));
    int metaLength = header.getInt(16);
    int payloadLength = header.getInt(20);
    assertEquals(0, header.getLong(24));
    assertEquals(new String(Json.toBytes(Samples.meta(MessageType.FORWARD_RESPONSE)), StandardCharsets.UTF_8), Frames.meta(frame));
    int payloadStart = 32 + metaLength + (8 - (32 + metaLength) % 8) % 8;
    assertEquals(0, payloadStart % 8);
    assertEquals(frame.length, payloadStart + payloadLength);

    // Body, as section 4.2 describes it: per column int32 offsets [0, n] then the values, each 8-aligned.
    String body = ByteBufUtil.hexDump(frame, frame.length - 8 - 32, 32);
    String oBits = String.format("%04x%04x%04x", patternBits(DType.BF16, 1, 0), patternBits(DType.BF16, 1, 1), patternBits(DType.BF16, 1, 2));
    String oLittleEndian = oBits.replaceAll("(..)(..)", "$2$1");
    String lseLittleEndian = String.format("%08x", Integer.reverseBytes(patternBits(DType.FP32, 2, 0)));
    assertEquals("00000000" + "03000000" + oLittleEndian + "0000" + "00000000" + "01000000" + lseLittleEndian + "00000000", body);
    assertEquals("ffffffff00000000", ByteBufUtil.hexDump(frame, frame.length - 8, 8), "end-of-stream marker");
  }
}
