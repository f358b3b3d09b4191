package io.distca.protocol.wire;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonStreamContext;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.core.exc.StreamReadException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.MapperFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import com.fasterxml.jackson.databind.ObjectWriter;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import com.fasterxml.jackson.databind.json.JsonMapper;
import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ProtocolException;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufInputStream;
import io.netty.buffer.ByteBufOutputStream;
import java.io.CharConversionException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.lang.reflect.RecordComponent;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The one JSON mapping of metadata records: snake_case names ({@code heads_q}), enums by name, and
 * strict reading so that a typo never turns into a silent default:
 *
 * <ul>
 *   <li>every field of a record is required, and {@code null} only where the protocol allows it
 *       ({@link #NULLABLE}), in lists too;
 *   <li>unknown fields are rejected (compatibility is the frame version's job, not leniency's);
 *   <li>no coercion: {@code "5"} is not a number, {@code 1.5} is not an int, {@code null} is not 0;
 *   <li>nothing may follow the top-level object.
 * </ul>
 *
 * Every failure becomes INVALID_METADATA whose field is the JSON path, e.g. {@code tasks[2].q_len}.
 */
public final class Json {
  private static final ObjectMapper MAPPER = newMapper();
  private static final ObjectWriter WRITER = MAPPER.writer();
  // Jackson reports a missing creator property only in its message text; the test of a missing field pins it.
  private static final Pattern MISSING_PROPERTY = Pattern.compile("Missing required creator property '([^']+)'");

  private Json() {}

  /** A fresh mapper with the protocol's conventions, for components that speak the same JSON elsewhere. */
  public static ObjectMapper newMapper() {
    return JsonMapper.builder()
        .propertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
        .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
        .enable(DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES)
        .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
        .enable(DeserializationFeature.FAIL_ON_NUMBERS_FOR_ENUMS)
        .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT)
        .disable(MapperFeature.ALLOW_COERCION_OF_SCALARS)
        .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
        .build();
  }

  public static ObjectReader reader(Class<?> type) {
    return MAPPER.readerFor(type);
  }

  public static ObjectWriter writer() {
    return WRITER;
  }

  /** Appends {@code meta} as UTF-8 JSON; returns the number of bytes written. */
  public static int write(Object meta, ByteBuf out) {
    int start = out.writerIndex();
    try (ByteBufOutputStream stream = new ByteBufOutputStream(out)) {
      WRITER.writeValue((OutputStream) stream, meta); // ByteBufOutputStream is also a DataOutput
    } catch (IOException e) {
      throw new UncheckedIOException("serializing " + meta.getClass().getSimpleName() + " metadata", e);
    }
    return out.writerIndex() - start;
  }

  public static byte[] toBytes(Object meta) {
    try {
      return WRITER.writeValueAsBytes(meta);
    } catch (IOException e) {
      throw new UncheckedIOException("serializing " + meta.getClass().getSimpleName() + " metadata", e);
    }
  }

  /**
   * Reads the readable bytes of {@code json} (not consumed) as a {@code type} record.
   *
   * @throws ProtocolException INVALID_METADATA naming the offending field
   */
  public static <T> T read(ByteBuf json, Class<T> type) {
    if (!json.isReadable()) {
      throw new ProtocolException(ErrorCode.INVALID_METADATA, null,
          "metadata is empty; expected a JSON object for " + type.getSimpleName());
    }
    String notUtf8 = notUtf8(json);
    if (notUtf8 != null) {
      throw new ProtocolException(ErrorCode.INVALID_METADATA, null, "metadata is not UTF-8 JSON: " + notUtf8);
    }
    try (InputStream in = new ByteBufInputStream(json.duplicate())) {
      T value = MAPPER.readValue(in, type);
      rejectNulls(value, null);
      return value;
    } catch (CharConversionException e) {
      throw new ProtocolException(ErrorCode.INVALID_METADATA, null, "metadata is not valid UTF-8: " + e.getMessage(), 0, e);
    } catch (JsonMappingException e) {
      throw new ProtocolException(ErrorCode.INVALID_METADATA, fieldOf(e), e.getOriginalMessage(), 0, e);
    } catch (StreamReadException e) {
      throw new ProtocolException(ErrorCode.INVALID_METADATA, fieldOf(e.getProcessor()),
          "metadata is not valid JSON: " + e.getOriginalMessage(), 0, e);
    } catch (JsonProcessingException e) {
      throw new ProtocolException(ErrorCode.INVALID_METADATA, null, "metadata rejected: " + e.getOriginalMessage(), 0, e);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * Jackson guesses the encoding of bytes from their first four (UTF-16 and UTF-32 byte order marks,
   * NUL bytes next to ASCII) and would read such metadata as UTF-16 or UTF-32. The protocol's
   * metadata is UTF-8 only, and valid UTF-8 JSON starts with neither a NUL nor 0xFE/0xFF, so those
   * starts are refused before Jackson sees them. Null when the start is fine.
   */
  private static String notUtf8(ByteBuf json) {
    int start = json.readerIndex();
    int first = json.getUnsignedByte(start);
    if (first == 0xfe || first == 0xff) {
      return String.format("starts with byte 0x%02x (a UTF-16 or UTF-32 byte order mark?)", first);
    }
    for (int i = 0; i < Math.min(4, json.readableBytes()); i++) {
      if (json.getByte(start + i) == 0) {
        return "NUL byte at offset " + i + " (UTF-16 or UTF-32 text?)";
      }
    }
    return null;
  }

  /**
   * Record components that may be null: those docs/protocol.md marks "nullable" (a HELLO without a
   * token, an ERROR about no field in particular). Jackson leaves a JSON null in any reference
   * field, so every other null is refused here, naming its path.
   */
  static final Set<String> NULLABLE = Set.of("Hello.token", "ErrorReply.field");
  private static final PropertyNamingStrategies.NamingBase SNAKE =
      (PropertyNamingStrategies.NamingBase) PropertyNamingStrategies.SNAKE_CASE;
  private static final ClassValue<RecordComponent[]> COMPONENTS = new ClassValue<>() {
    @Override
    protected RecordComponent[] computeValue(Class<?> type) {
      RecordComponent[] components = type.getRecordComponents();
      for (RecordComponent c : components) {
        c.getAccessor().setAccessible(true);
      }
      return components;
    }
  };

  private static void rejectNulls(Object value, String path) {
    if (value instanceof Record record) {
      for (RecordComponent c : COMPONENTS.get(record.getClass())) {
        String name = SNAKE.translate(c.getName());
        String at = path == null ? name : path + "." + name;
        Object v;
        try {
          v = c.getAccessor().invoke(record);
        } catch (ReflectiveOperationException e) {
          throw new IllegalStateException("reading " + at, e);
        }
        if (v == null && !NULLABLE.contains(record.getClass().getSimpleName() + "." + c.getName())) {
          throw new ProtocolException(ErrorCode.INVALID_METADATA, at, "must not be null");
        }
        rejectNulls(v, at);
      }
    } else if (value instanceof List<?> list) {
      for (int i = 0; i < list.size(); i++) {
        String at = path + "[" + i + "]";
        if (list.get(i) == null) {
          throw new ProtocolException(ErrorCode.INVALID_METADATA, at, "must not be null");
        }
        rejectNulls(list.get(i), at);
      }
    }
  }

  /** Where the parser stood when the syntax broke, e.g. {@code tasks[1].q_len}; null at the top level. */
  private static String fieldOf(JsonParser parser) {
    if (parser == null) {
      return null;
    }
    Deque<Object> segments = new ArrayDeque<>();
    for (JsonStreamContext c = parser.getParsingContext(); c != null && !c.inRoot(); c = c.getParent()) {
      if (c.inArray()) {
        segments.push(Math.max(0, c.getCurrentIndex()));
      } else if (c.getCurrentName() != null) {
        segments.push(c.getCurrentName());
      }
    }
    return pathOf(segments);
  }

  /** Joins field names and array indexes: {@code tasks[1].q_len}. */
  private static String pathOf(Iterable<Object> segments) {
    StringBuilder path = new StringBuilder();
    for (Object segment : segments) {
      if (segment instanceof Integer index) {
        path.append('[').append(index).append(']');
      } else {
        path.append(path.length() > 0 ? "." : "").append(segment);
      }
    }
    return path.length() == 0 ? null : path.toString();
  }

  private static String fieldOf(JsonMappingException e) {
    List<Object> segments = new ArrayList<>();
    for (JsonMappingException.Reference ref : e.getPath()) {
      if (ref.getFieldName() != null) {
        segments.add(ref.getFieldName());
      } else if (ref.getIndex() >= 0) {
        segments.add(ref.getIndex());
      }
    }
    if (e instanceof UnrecognizedPropertyException unknown) {
      if (segments.isEmpty() || !unknown.getPropertyName().equals(segments.get(segments.size() - 1))) {
        segments.add(unknown.getPropertyName());
      }
    } else {
      Matcher missing = MISSING_PROPERTY.matcher(String.valueOf(e.getOriginalMessage()));
      if (missing.find()) {
        segments.add(missing.group(1));
      }
    }
    return pathOf(segments);
  }
}
