package io.distca.protocol.testkit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * A seeded, structure-aware mutation fuzzer for DistCA frames. From valid seed frames it makes bad
 * ones at every layer a receiver checks: raw bits and bytes, truncations, the header's length and
 * other fields, the JSON metadata (fields removed, added, retyped, set to edge values; text broken),
 * the Arrow payload (message sizes, flatbuffer bytes, the {@code distca.shape} and
 * {@code distca.dtype} strings, column names), tensor values (NaN, infinity), splices of two frames,
 * and random bytes. The same seed gives the same sequence, so a failure can be replayed.
 */
public final class FrameMutator {
  /** What was done to a seed. */
  public enum Mutation {
    BIT_FLIP, BYTE_SET, TRUNCATE, LENGTH_FIELD, HEADER_FIELD, JSON_FIELD, JSON_TEXT, ARROW_MESSAGE, ARROW_STRING,
    TENSOR_VALUE, SPLICE, META_PAYLOAD_SWAP, RANDOM_BYTES, RANDOM_FRAME, STACKED, NONE
  }

  /** One fuzz input: the mutation, the seed it started from, the bytes to send. */
  public record Case(Mutation mutation, String seed, byte[] bytes) {}

  private static final Mutation[] SINGLE = {
    Mutation.BIT_FLIP, Mutation.BYTE_SET, Mutation.TRUNCATE, Mutation.LENGTH_FIELD, Mutation.HEADER_FIELD,
    Mutation.JSON_FIELD, Mutation.JSON_FIELD, Mutation.JSON_FIELD, Mutation.JSON_TEXT, Mutation.ARROW_MESSAGE,
    Mutation.ARROW_STRING, Mutation.ARROW_STRING, Mutation.TENSOR_VALUE, Mutation.SPLICE, Mutation.META_PAYLOAD_SWAP,
    Mutation.RANDOM_BYTES, Mutation.RANDOM_FRAME
  };
  private static final ObjectMapper MAPPER = new ObjectMapper();
  private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
  private static final String[] DTYPE_WORDS = {"bf16", "fp16", "fp32", "in32", "BF16", "f p1", "\0\0\0\0"};
  private static final String[] COLUMN_LETTERS = {"q", "k", "v", "o", "x", "Q", "\0"};

  private final List<SeedFrames.Seed> seeds;
  private final SplittableRandom rnd;
  private final double validShare;

  /**
   * @param validShare fraction of cases sent unmodified (valid frames keep the connection and the
   *     server's state realistic between bad ones)
   */
  public FrameMutator(List<SeedFrames.Seed> seeds, long seed, double validShare) {
    this.seeds = List.copyOf(seeds);
    this.rnd = new SplittableRandom(seed);
    this.validShare = validShare;
  }

  public Case next() {
    SeedFrames.Seed seed = seeds.get(rnd.nextInt(seeds.size()));
    if (rnd.nextDouble() < validShare) {
      return new Case(Mutation.NONE, seed.name(), seed.frame());
    }
    if (rnd.nextInt(10) == 0) {
      byte[] b = seed.frame();
      int n = 2 + rnd.nextInt(2);
      for (int i = 0; i < n; i++) {
        b = apply(SINGLE[rnd.nextInt(SINGLE.length)], b);
      }
      return new Case(Mutation.STACKED, seed.name(), b);
    }
    Mutation m = SINGLE[rnd.nextInt(SINGLE.length)];
    return new Case(m, seed.name(), apply(m, seed.frame()));
  }

  private byte[] apply(Mutation m, byte[] frame) {
    return switch (m) {
      case BIT_FLIP -> bitFlip(frame);
      case BYTE_SET -> byteSet(frame);
      case TRUNCATE -> Arrays.copyOf(frame, frame.length == 0 ? 0 : rnd.nextInt(frame.length));
      case LENGTH_FIELD -> lengthField(frame);
      case HEADER_FIELD -> headerField(frame);
      case JSON_FIELD -> withParts(frame, (p) -> p.meta = jsonField(p.meta));
      case JSON_TEXT -> withParts(frame, (p) -> p.meta = jsonText(p.meta));
      case ARROW_MESSAGE -> withParts(frame, (p) -> p.payload = arrowMessage(p.payload));
      case ARROW_STRING -> withParts(frame, (p) -> p.payload = arrowString(p.payload));
      case TENSOR_VALUE -> withParts(frame, (p) -> p.payload = tensorValue(p.payload));
      case SPLICE -> splice(frame, other().frame());
      case META_PAYLOAD_SWAP -> metaPayloadSwap(frame, other().frame());
      case RANDOM_BYTES -> randomBytes();
      case RANDOM_FRAME -> randomFrame();
      case STACKED, NONE -> frame;
    };
  }

  private SeedFrames.Seed other() {
    return seeds.get(rnd.nextInt(seeds.size()));
  }

  // ---- raw bytes

  private byte[] bitFlip(byte[] frame) {
    byte[] b = frame.clone();
    if (b.length == 0) {
      return b;
    }
    int flips = 1 + rnd.nextInt(8);
    // half the flips land in the header and metadata, where a flipped bit changes the most
    int hot = Math.min(b.length, FrameSpec.HEADER_BYTES + metaLength(b));
    for (int i = 0; i < flips; i++) {
      int at = rnd.nextBoolean() && hot > 0 ? rnd.nextInt(hot) : rnd.nextInt(b.length);
      b[at] ^= (byte) (1 << rnd.nextInt(8));
    }
    return b;
  }

  private byte[] byteSet(byte[] frame) {
    byte[] b = frame.clone();
    if (b.length == 0) {
      return b;
    }
    int n = 1 + rnd.nextInt(8);
    byte[] interesting = {0, (byte) 0xff, 0x7f, (byte) 0x80, 1, '"', '{', '[', ','};
    for (int i = 0; i < n; i++) {
      int at = rnd.nextInt(b.length);
      b[at] = rnd.nextBoolean() ? interesting[rnd.nextInt(interesting.length)] : (byte) rnd.nextInt(256);
    }
    return b;
  }

  private byte[] lengthField(byte[] frame) {
    if (frame.length < FrameSpec.HEADER_BYTES) {
      return frame;
    }
    byte[] b = frame.clone();
    ByteBuffer h = ByteBuffer.wrap(b);
    int offset = rnd.nextBoolean() ? 16 : 20;
    long actual = h.getInt(offset) & 0xffffffffL;
    long[] choices = {0, 1, actual - 1, actual + 1, actual - 8, actual + 8, actual + 7, actual * 2, actual / 2,
        0xffffffffL, 0x7fffffffL, 0x80000000L, 4096, (1 << 20) + 1, rnd.nextLong(1L << 32)};
    h.putInt(offset, (int) choices[rnd.nextInt(choices.length)]);
    return b;
  }

  private byte[] headerField(byte[] frame) {
    if (frame.length < FrameSpec.HEADER_BYTES) {
      return frame;
    }
    byte[] b = frame.clone();
    ByteBuffer h = ByteBuffer.wrap(b);
    switch (rnd.nextInt(6)) {
      case 0 -> b[5] = (byte) (rnd.nextBoolean() ? rnd.nextInt(256) : new int[] {0, 1, 2, 3, 4, 5, 16, 17, 18, 19, 32,
          33, 34, 35, 48, 49, 6, 20, 50, 255}[rnd.nextInt(20)]);
      case 1 -> h.putShort(6, (short) (rnd.nextBoolean() ? rnd.nextInt(1 << 16) : h.getShort(6) ^ 1));
      case 2 -> b[4] = (byte) rnd.nextInt(256);
      case 3 -> b[24 + rnd.nextInt(8)] = (byte) (1 + rnd.nextInt(255));
      case 4 -> h.putLong(8, new long[] {0, -1, Long.MAX_VALUE, Long.MIN_VALUE, rnd.nextLong()}[rnd.nextInt(5)]);
      default -> h.putInt(0, rnd.nextBoolean() ? rnd.nextInt() : Integer.reverseBytes(FrameSpec.MAGIC));
    }
    return b;
  }

  // ---- JSON metadata

  private byte[] jsonField(byte[] meta) {
    JsonNode root;
    try {
      root = MAPPER.readTree(meta);
    } catch (IOException e) {
      return jsonText(meta);
    }
    if (root == null || !root.isContainerNode()) {
      return jsonText(meta);
    }
    List<JsonNode> containers = new ArrayList<>();
    collectContainers(root, containers);
    JsonNode target = containers.get(rnd.nextInt(containers.size()));
    if (target instanceof ObjectNode obj) {
      List<String> names = new ArrayList<>();
      obj.fieldNames().forEachRemaining(names::add);
      int op = rnd.nextInt(10);
      if (names.isEmpty() || op == 0) {
        obj.set(rnd.nextBoolean() ? "unknown_field" : "Job", interestingValue(null));
      } else if (op == 1) {
        obj.remove(names.get(rnd.nextInt(names.size())));
      } else {
        String name = names.get(rnd.nextInt(names.size()));
        obj.set(name, interestingValue(obj.get(name)));
      }
    } else if (target instanceof ArrayNode arr) {
      int op = rnd.nextInt(5);
      if (arr.isEmpty() || op == 0) {
        arr.add(arr.isEmpty() ? interestingValue(null) : arr.get(rnd.nextInt(arr.size())).deepCopy());
      } else if (op == 1) {
        arr.remove(rnd.nextInt(arr.size()));
      } else if (op == 2) {
        arr.removeAll();
      } else {
        int i = rnd.nextInt(arr.size());
        arr.set(i, interestingValue(arr.get(i)));
      }
    }
    try {
      return MAPPER.writeValueAsBytes(root);
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  private static void collectContainers(JsonNode node, List<JsonNode> out) {
    if (node.isContainerNode()) {
      out.add(node);
      node.elements().forEachRemaining(child -> collectContainers(child, out));
    }
  }

  /** Edge values for {@code current}'s type half the time, any JSON type the other half. */
  private JsonNode interestingValue(JsonNode current) {
    if (current != null && current.isIntegralNumber() && rnd.nextBoolean()) {
      long v = current.asLong();
      long[] near = {v - 1, v + 1, 0, -1, -v, v * 1000, Integer.MAX_VALUE, Integer.MIN_VALUE, 1L << 31, Long.MAX_VALUE,
          Long.MIN_VALUE, 257, 1 << 20, 1 << 30};
      return NODES.numberNode(near[rnd.nextInt(near.length)]);
    }
    if (current != null && current.isFloatingPointNumber() && rnd.nextBoolean()) {
      double[] near = {0.0, -0.0, -1.0, 1e-45, 1e39, Double.MAX_VALUE, Double.MIN_VALUE, 3.4028235e38};
      return NODES.numberNode(near[rnd.nextInt(near.length)]);
    }
    if (current != null && current.isTextual() && rnd.nextBoolean()) {
      String[] near = {"", "bf16", "fp16", "fp32", "int32", "BF16", "fp8", "job\u0000", "\ud83d\ude00", "x".repeat(70_000),
          "trainer", "server", "OVERLOADED"};
      return NODES.textNode(near[rnd.nextInt(near.length)]);
    }
    return switch (rnd.nextInt(14)) {
      case 0 -> NODES.nullNode();
      case 1 -> NODES.booleanNode(rnd.nextBoolean());
      case 2 -> NODES.numberNode(1.5);
      case 3 -> NODES.numberNode(new BigInteger("99999999999999999999999"));
      case 4 -> NODES.textNode("5");
      case 5 -> NODES.arrayNode();
      case 6 -> NODES.arrayNode().add(1).add(2).add(-3);
      case 7 -> NODES.objectNode();
      case 8 -> NODES.numberNode(-1);
      case 9 -> NODES.numberNode(0);
      case 10 -> bigIntArray();
      case 11 -> nested(20);
      case 12 -> NODES.numberNode(Integer.MAX_VALUE);
      default -> NODES.numberNode(rnd.nextLong());
    };
  }

  private JsonNode bigIntArray() {
    ArrayNode a = NODES.arrayNode();
    int n = 1000 + rnd.nextInt(30_000);
    for (int i = 0; i < n; i++) {
      a.add(1);
    }
    return a;
  }

  private static JsonNode nested(int depth) {
    JsonNode n = NODES.arrayNode();
    for (int i = 0; i < depth; i++) {
      n = NODES.arrayNode().add(n);
    }
    return n;
  }

  private byte[] jsonText(byte[] meta) {
    String s = new String(meta, StandardCharsets.UTF_8);
    int at = s.isEmpty() ? 0 : rnd.nextInt(s.length());
    switch (rnd.nextInt(12)) {
      case 10 -> {
        // deeper than any parser should follow (written as text: Jackson's writer refuses it too)
        int depth = 3000;
        s = s.replaceFirst(":", ":" + "[".repeat(depth) + "]".repeat(depth) + ",\"deep\":");
      }
      case 0 -> s = s.substring(0, at) + s.substring(Math.min(s.length(), at + 1 + rnd.nextInt(4)));
      case 1 -> s = s.substring(0, at) + "\",:{}[]0-e\\ntu".charAt(rnd.nextInt(14)) + s.substring(at);
      case 2 -> s = s.substring(0, at);
      case 3 -> s = s + new String[] {" ", "}", "{}", "x", "\n", "\u0000"}[rnd.nextInt(6)];
      case 4 -> s = duplicateKey(s);
      case 5 -> s = "\ufeff" + s;
      case 6 -> s = s.replaceFirst(":", ":/*c*/");
      case 7 -> s = s.replaceFirst(":[-0-9.e]+", rnd.nextBoolean() ? ":NaN" : ":1e400");
      case 8 -> s = s.replace('"', '\'');
      case 9 -> {
        byte[] b = meta.clone();
        if (b.length > 0) {
          b[rnd.nextInt(b.length)] = (byte) new int[] {0xc0, 0xff, 0xed, 0x80, 0xf8}[rnd.nextInt(5)];
        }
        return b;
      }
      default -> s = s.replaceFirst("\"[a-z_]+\"", "\"" + "a".repeat(rnd.nextInt(3)) + "\"");
    }
    return s.getBytes(StandardCharsets.UTF_8);
  }

  private String duplicateKey(String s) {
    int open = s.indexOf('{');
    int colon = s.indexOf(':', open);
    int end = s.indexOf(',', colon);
    if (open < 0 || colon < 0 || end < 0) {
      return s;
    }
    return s.substring(0, open + 1) + s.substring(open + 1, end) + "," + s.substring(open + 1);
  }

  // ---- Arrow payload

  /** Offsets of the Arrow IPC messages in a payload: continuation marker positions, then EOS. */
  private static List<Integer> messageStarts(byte[] payload) {
    List<Integer> starts = new ArrayList<>();
    ByteBuffer b = ByteBuffer.wrap(payload).order(ByteOrder.LITTLE_ENDIAN);
    long pos = 0;
    while (pos >= 0 && pos + 8 <= payload.length && b.getInt((int) pos) == -1) {
      starts.add((int) pos);
      int size = b.getInt((int) pos + 4);
      if (size <= 0) {
        break;
      }
      pos += 8L + size;
      if (starts.size() == 2) {
        pos = payload.length - 8; // the record batch body is not parsed here: the stream ends with EOS
      }
    }
    return starts;
  }

  private byte[] arrowMessage(byte[] payload) {
    if (payload.length < 16) {
      return byteSetIn(payload, 0, payload.length);
    }
    List<Integer> starts = messageStarts(payload);
    if (starts.isEmpty()) {
      return byteSetIn(payload, 0, payload.length);
    }
    byte[] b = payload.clone();
    ByteBuffer le = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
    int message = starts.get(rnd.nextInt(starts.size()));
    int size = le.getInt(message + 4);
    switch (rnd.nextInt(7)) {
      case 0 -> le.putInt(message + 4, new int[] {0, -1, 7, size - 1, size + 1, size - 8, size + 8, Integer.MAX_VALUE,
          Integer.MIN_VALUE}[rnd.nextInt(9)]);
      case 1 -> le.putInt(message, rnd.nextBoolean() ? 0 : 0x7fffffff);
      case 2 -> {
        int from = Math.min(b.length, message + 8);
        int to = Math.min(b.length, message + 8 + Math.max(0, size));
        return byteSetIn(b, from, to);
      }
      case 3 -> {
        return Arrays.copyOf(b, b.length - 8); // no end-of-stream marker
      }
      case 4 -> {
        byte[] longer = Arrays.copyOf(b, b.length + 8 * (1 + rnd.nextInt(3)));
        System.arraycopy(b, 0, longer, b.length, Math.min(b.length, longer.length - b.length));
        return longer; // data after the end-of-stream marker
      }
      case 5 -> {
        return Arrays.copyOf(b, rnd.nextInt(b.length)); // stream cut short
      }
      default -> {
        // a second copy of the record batch message before the end-of-stream marker
        if (starts.size() < 3) {
          return byteSetIn(b, 0, b.length);
        }
        int rb = starts.get(1);
        int eos = starts.get(2);
        byte[] twice = new byte[b.length + (eos - rb)];
        System.arraycopy(b, 0, twice, 0, eos);
        System.arraycopy(b, rb, twice, eos, eos - rb);
        System.arraycopy(b, eos, twice, eos + (eos - rb), b.length - eos);
        return twice;
      }
    }
    return b;
  }

  /** Same-length edits of the schema's strings: shapes, dtypes and column names stay parseable flatbuffers. */
  private byte[] arrowString(byte[] payload) {
    if (payload.length == 0) {
      return payload;
    }
    byte[] b = payload.clone();
    String ascii = new String(b, StandardCharsets.ISO_8859_1);
    switch (rnd.nextInt(3)) {
      case 0 -> {
        List<Integer> digits = new ArrayList<>();
        for (int i = ascii.indexOf('['); i >= 0 && i < ascii.length(); i = ascii.indexOf('[', i + 1)) {
          for (int j = i + 1; j < ascii.length() && "0123456789,]".indexOf(ascii.charAt(j)) >= 0; j++) {
            digits.add(j);
            if (ascii.charAt(j) == ']') {
              break;
            }
          }
        }
        if (!digits.isEmpty()) {
          b[digits.get(rnd.nextInt(digits.size()))] = (byte) "0123456789,-]e[ ".charAt(rnd.nextInt(16));
        }
      }
      case 1 -> {
        for (String word : new String[] {"bf16", "fp16", "fp32", "int32"}) {
          int at = ascii.indexOf(word);
          if (at >= 0 && rnd.nextBoolean()) {
            byte[] w = DTYPE_WORDS[rnd.nextInt(DTYPE_WORDS.length)].getBytes(StandardCharsets.ISO_8859_1);
            System.arraycopy(w, 0, b, at, Math.min(w.length, 4));
            break;
          }
        }
      }
      default -> {
        // column names are flatbuffer strings: int32 length 1 (or 2, 3), the bytes, a NUL
        List<Integer> names = new ArrayList<>();
        for (int i = 0; i + 6 <= b.length; i++) {
          if (b[i] == 1 && b[i + 1] == 0 && b[i + 2] == 0 && b[i + 3] == 0 && b[i + 5] == 0 && Character.isLetter(b[i + 4])) {
            names.add(i + 4);
          }
        }
        if (!names.isEmpty()) {
          b[names.get(rnd.nextInt(names.size()))] = (byte) COLUMN_LETTERS[rnd.nextInt(COLUMN_LETTERS.length)].charAt(0);
        }
      }
    }
    return b;
  }

  private byte[] tensorValue(byte[] payload) {
    List<Integer> starts = messageStarts(payload);
    if (starts.size() < 3) {
      return payload;
    }
    ByteBuffer le = ByteBuffer.wrap(payload).order(ByteOrder.LITTLE_ENDIAN);
    int bodyStart = starts.get(1) + 8 + le.getInt(starts.get(1) + 4);
    int bodyEnd = starts.get(2);
    if (bodyEnd - bodyStart < 4) {
      return payload;
    }
    byte[] b = payload.clone();
    int at = bodyStart + 2 * rnd.nextInt((bodyEnd - bodyStart) / 2 - 1);
    byte[][] specials = {
      {(byte) 0xc0, 0x7f}, {(byte) 0x80, 0x7f}, {(byte) 0x80, (byte) 0xff}, {0x00, 0x7c}, {0x00, 0x7e}, {0, 0, (byte) 0xc0, 0x7f},
      {0, 0, (byte) 0x80, 0x7f}, {(byte) 0xff, (byte) 0xff, (byte) 0x7f, 0x7f}
    };
    byte[] v = specials[rnd.nextInt(specials.length)];
    System.arraycopy(v, 0, b, at, Math.min(v.length, bodyEnd - at));
    return b;
  }

  private byte[] byteSetIn(byte[] b, int from, int to) {
    byte[] c = b.clone();
    if (to <= from) {
      return c;
    }
    int n = 1 + rnd.nextInt(4);
    for (int i = 0; i < n; i++) {
      c[from + rnd.nextInt(to - from)] = (byte) rnd.nextInt(256);
    }
    return c;
  }

  // ---- two frames, and random ones

  private byte[] splice(byte[] a, byte[] b) {
    int cutA = a.length == 0 ? 0 : rnd.nextInt(a.length);
    int cutB = b.length == 0 ? 0 : rnd.nextInt(b.length);
    byte[] s = Arrays.copyOf(a, cutA + b.length - cutB);
    System.arraycopy(b, cutB, s, cutA, b.length - cutB);
    return s;
  }

  private byte[] metaPayloadSwap(byte[] a, byte[] b) {
    Parts pa = Parts.of(a);
    Parts pb = Parts.of(b);
    if (pa == null || pb == null) {
      return splice(a, b);
    }
    if (rnd.nextBoolean()) {
      pa.meta = pb.meta;
    } else {
      pa.payload = pb.payload;
    }
    return pa.frame();
  }

  private byte[] randomBytes() {
    byte[] b = new byte[rnd.nextInt(300)];
    for (int i = 0; i < b.length; i++) {
      b[i] = (byte) rnd.nextInt(256);
    }
    if (b.length >= 5 && rnd.nextBoolean()) {
      ByteBuffer.wrap(b).putInt(FrameSpec.MAGIC).put((byte) 1); // past the first checks
    }
    return b;
  }

  private byte[] randomFrame() {
    Parts p = new Parts();
    p.typeCode = rnd.nextBoolean() ? rnd.nextInt(256) : new int[] {1, 3, 4, 16, 18, 32, 34, 48}[rnd.nextInt(8)];
    p.requestId = rnd.nextLong();
    if (rnd.nextBoolean()) {
      ObjectNode o = NODES.objectNode();
      int fields = rnd.nextInt(6);
      for (int i = 0; i < fields; i++) {
        o.set(new String[] {"job", "step", "tasks", "token", "sent_nanos", "heads_q", "zz"}[rnd.nextInt(7)], interestingValue(null));
      }
      p.meta = o.toString().getBytes(StandardCharsets.UTF_8);
    } else {
      p.meta = new byte[rnd.nextInt(64)];
      for (int i = 0; i < p.meta.length; i++) {
        p.meta[i] = (byte) rnd.nextInt(256);
      }
    }
    p.payload = rnd.nextBoolean() ? new byte[0] : randomBytes();
    return p.frame();
  }

  // ---- frame parts

  private interface PartsEdit {
    void edit(Parts p);
  }

  /** Edits metadata or payload of a frame and writes it back with consistent lengths and padding. */
  private byte[] withParts(byte[] frame, PartsEdit edit) {
    Parts p = Parts.of(frame);
    if (p == null) {
      return bitFlip(frame);
    }
    edit.edit(p);
    return p.frame();
  }

  private static int metaLength(byte[] frame) {
    return frame.length < FrameSpec.HEADER_BYTES ? 0 : Math.max(0, Math.min(frame.length, ByteBuffer.wrap(frame).getInt(16)));
  }

  /** A frame's header fields, metadata and payload, rebuilt with the lengths and padding they imply. */
  private static final class Parts {
    int typeCode;
    long requestId;
    byte[] meta;
    byte[] payload;

    static Parts of(byte[] frame) {
      FrameSpec.Framing f = FrameSpec.split(frame, Long.MAX_VALUE);
      if (f.frames().size() != 1) {
        return null;
      }
      FrameSpec.Frame fr = f.frames().get(0);
      Parts p = new Parts();
      p.typeCode = fr.typeCode();
      p.requestId = fr.requestId();
      p.meta = Arrays.copyOfRange(frame, FrameSpec.HEADER_BYTES, FrameSpec.HEADER_BYTES + fr.metaLength());
      p.payload = Arrays.copyOfRange(frame, fr.length() - fr.payloadLength(), fr.length());
      return p;
    }

    byte[] frame() {
      int padding = (8 - (FrameSpec.HEADER_BYTES + meta.length) % 8) % 8;
      ByteBuffer b = ByteBuffer.allocate(FrameSpec.HEADER_BYTES + meta.length + padding + payload.length);
      b.putInt(FrameSpec.MAGIC).put((byte) 1).put((byte) typeCode).putShort((short) (payload.length > 0 ? 1 : 0))
          .putLong(requestId).putInt(meta.length).putInt(payload.length).putLong(0);
      b.put(meta).put(new byte[padding]).put(payload);
      return b.array();
    }
  }
}
