package io.distca.observability;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;

/**
 * A tag of a catalogue meter with the closed set of values it may take. Closing the set is what
 * keeps cardinality bounded (no task ids, no request ids): a value outside it is a programming
 * error and fails fast.
 *
 * @param enumType for tags that follow an enum ({@link #ofEnum}), its simple name (for the docs, which
 *     then do not need regenerating when the enum grows); null otherwise
 */
public record TagSpec(String key, List<String> values, String enumType) {
  public TagSpec {
    Objects.requireNonNull(key, "key");
    values = List.copyOf(values);
    if (values.isEmpty()) {
      throw new IllegalArgumentException("tag " + key + " needs at least one value");
    }
  }

  public static TagSpec of(String key, String... values) {
    return new TagSpec(key, List.of(values), null);
  }

  /** The constants of {@code type} in lower case: {@code ErrorCode.OVERLOADED} becomes {@code overloaded}. */
  public static <E extends Enum<E>> TagSpec ofEnum(String key, Class<E> type) {
    List<String> values = new ArrayList<>();
    for (E e : type.getEnumConstants()) {
      values.add(value(e));
    }
    return new TagSpec(key, values, type.getSimpleName());
  }

  /** The tag value of an enum constant, as {@link #ofEnum} lists it. */
  public static String value(Enum<?> e) {
    return e.name().toLowerCase(Locale.ROOT);
  }

  public static final TagSpec PHASE = of("phase", "forward", "backward");
  public static final TagSpec DIRECTION = of("direction", "received", "sent");
}
