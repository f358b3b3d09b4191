package io.distca.protocol.tensor;

import java.util.Locale;

/** Element types a tensor can carry on the wire. Codes are the wire names used in metadata. */
public enum DType {
  BF16("bf16", 2),
  FP16("fp16", 2),
  FP32("fp32", 4),
  INT32("int32", 4);

  private final String wireName;
  private final int byteSize;

  DType(String wireName, int byteSize) {
    this.wireName = wireName;
    this.byteSize = byteSize;
  }

  public String wireName() {
    return wireName;
  }

  public int byteSize() {
    return byteSize;
  }

  public boolean isFloating() {
    return this != INT32;
  }

  /** Parses a wire name; returns null when unknown so that callers can raise a typed error naming the field. */
  public static DType fromWireName(String name) {
    if (name == null) {
      return null;
    }
    String lower = name.toLowerCase(Locale.ROOT);
    for (DType t : values()) {
      if (t.wireName.equals(lower)) {
        return t;
      }
    }
    return null;
  }

  @Override
  public String toString() {
    return wireName;
  }
}
