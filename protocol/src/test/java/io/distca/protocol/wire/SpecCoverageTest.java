package io.distca.protocol.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.MessageType;
import java.io.IOException;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.RecordComponent;
import java.lang.reflect.Type;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** Every message type, metadata field and error code the code knows is specified in docs/protocol.md. */
class SpecCoverageTest {
  private static final Path SPEC = Path.of("..", "docs", "protocol.md");

  private static String spec() throws IOException {
    return Files.readString(SPEC, StandardCharsets.UTF_8);
  }

  @Test
  void everyMessageTypeIsInTheTypeTableWithItsCode() throws IOException {
    String spec = spec();
    for (MessageType type : MessageType.values()) {
      assertTrue(spec.contains("| " + type.code() + " | `" + type.name() + "` |"), type + " (code " + type.code() + ") missing from section 5");
    }
  }

  @Test
  void everyMetadataFieldIsSpecified() throws IOException {
    String spec = spec();
    List<String> missing = new ArrayList<>();
    for (MessageType type : MessageType.values()) {
      collectMissing(type.metaClass(), spec, missing);
    }
    assertEquals(List.of(), missing, "fields without a mention in docs/protocol.md");
  }

  private static void collectMissing(Class<?> record, String spec, List<String> missing) {
    for (RecordComponent c : record.getRecordComponents()) {
      String wire = snakeCase(c.getName());
      if (!spec.contains("`" + wire + "`")) {
        missing.add(record.getSimpleName() + "." + wire);
      }
      Type generic = c.getGenericType();
      if (generic instanceof ParameterizedType p && p.getActualTypeArguments()[0] instanceof Class<?> element && element.isRecord()) {
        collectMissing(element, spec, missing);
      }
    }
  }

  private static String snakeCase(String camel) {
    Matcher m = Pattern.compile("([A-Z])").matcher(camel);
    return m.replaceAll(r -> "_" + r.group(1).toLowerCase());
  }

  @Test
  void everyErrorCodeIsInTheErrorTableWithItsConnectionRule() throws IOException {
    String spec = spec();
    for (ErrorCode code : ErrorCode.values()) {
      String row = "| `" + code.name() + "` | " + (code.closesConnection() ? "yes" : "no") + " |";
      assertTrue(spec.contains(row), "section 7.1 lacks " + row);
    }
  }

  @Test
  void snakeCaseHereMatchesTheJsonMapping() {
    String json = new String(Json.toBytes(Samples.meta(MessageType.PLAN_REQUEST)), StandardCharsets.UTF_8);
    for (RecordComponent c : io.distca.protocol.message.PlanRequest.class.getRecordComponents()) {
      assertTrue(json.contains("\"" + snakeCase(c.getName()) + "\":"), c.getName() + " in " + json);
    }
  }
}
