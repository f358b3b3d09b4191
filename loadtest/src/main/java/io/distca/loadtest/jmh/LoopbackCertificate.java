package io.distca.loadtest.jmh;

import io.distca.protocol.tls.TlsOptions;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A throw-away self-signed certificate for 127.0.0.1, made with the JDK's keytool (so benchmarks
 * need nothing beyond the JDK) and written as the PEM files {@link TlsOptions} reads. It is its own
 * CA: the options present it and trust it, on both ends of a loopback connection.
 */
final class LoopbackCertificate {
  private static final char[] PASSWORD = "benchmark".toCharArray();

  private LoopbackCertificate() {}

  /** TLS options presenting and trusting a new certificate whose files go into {@code dir}. */
  static TlsOptions create(Path dir) throws IOException, InterruptedException, GeneralSecurityException {
    Path store = dir.resolve("loopback.p12");
    String keytool = Path.of(System.getProperty("java.home"), "bin", "keytool").toString();
    run(List.of(keytool, "-genkeypair", "-alias", "loopback", "-keyalg", "EC", "-groupname", "secp256r1",
        "-dname", "CN=loopback", "-ext", "SAN=ip:127.0.0.1,dns:localhost", "-validity", "2", "-storetype", "PKCS12",
        "-keystore", store.toString(), "-storepass", new String(PASSWORD)));
    Path cert = dir.resolve("tls.crt");
    run(List.of(keytool, "-exportcert", "-rfc", "-alias", "loopback", "-keystore", store.toString(), "-storepass",
        new String(PASSWORD), "-file", cert.toString()));
    KeyStore ks = KeyStore.getInstance("PKCS12");
    try (InputStream in = Files.newInputStream(store)) {
      ks.load(in, PASSWORD);
    }
    PrivateKey key = (PrivateKey) ks.getKey("loopback", PASSWORD);
    Path keyFile = Files.writeString(dir.resolve("tls.key"), "-----BEGIN PRIVATE KEY-----\n"
        + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(key.getEncoded())
        + "\n-----END PRIVATE KEY-----\n", StandardCharsets.US_ASCII);
    return new TlsOptions().certificateChain(cert).privateKey(keyFile).trustedCertificates(cert).conclude();
  }

  private static void run(List<String> command) throws IOException, InterruptedException {
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
      throw new IOException(String.join(" ", command) + " failed: " + out);
    }
  }
}
