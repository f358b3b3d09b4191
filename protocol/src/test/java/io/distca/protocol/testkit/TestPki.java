package io.distca.protocol.testkit;

import io.distca.protocol.tls.TlsOptions;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Date;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.operator.OperatorCreationException;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * A throw-away certificate authority for tests: issues EC P-256 certificates at run time and writes
 * them as PEM files in the layout of a Kubernetes TLS Secret ({@code tls.crt}, {@code tls.key},
 * {@code ca.crt}), so that no private key is ever committed. Keys are PKCS#8, as {@link TlsOptions}
 * requires.
 */
public final class TestPki {
  private static final AtomicLong SERIAL = new AtomicLong(System.currentTimeMillis());

  private final Path dir;
  private final String name;
  private final KeyPair caKey;
  private final X500Name caName;
  private final X509Certificate caCertificate;
  private final Path caFile;

  /** A certificate and its key, as PEM files. */
  public record Identity(Path certificateChain, Path privateKey) {}

  private TestPki(Path dir, String name) {
    this.dir = dir;
    this.name = name;
    this.caKey = newKeyPair();
    this.caName = new X500Name("CN=" + name + " test CA");
    Instant now = Instant.now();
    this.caCertificate = sign(caKey, caName, caKey, caName, now.minus(Duration.ofHours(1)), now.plus(Duration.ofDays(1)), true, List.of());
    this.caFile = write(name + "-ca.crt", pem("CERTIFICATE", encoded(caCertificate)));
  }

  /** A new CA whose files go into {@code dir} (a JUnit {@code @TempDir}), named {@code name}. */
  public static TestPki create(Path dir, String name) {
    return new TestPki(dir, name);
  }

  /** The CA bundle ({@code ca.crt}) that certificates of this PKI chain to. */
  public Path caCertificate() {
    return caFile;
  }

  /** A certificate for loopback (DNS {@code localhost}, IP 127.0.0.1), valid from an hour ago for a day. */
  public Identity loopback(String subject) {
    Instant now = Instant.now();
    return issue(subject, now.minus(Duration.ofHours(1)), now.plus(Duration.ofDays(1)), "localhost", "127.0.0.1");
  }

  /**
   * Issues a certificate for {@code subject} valid in [{@code notBefore}, {@code notAfter}] naming
   * {@code altNames} (IP literals become IP names, others DNS names), usable for both server and
   * client authentication.
   */
  public Identity issue(String subject, Instant notBefore, Instant notAfter, String... altNames) {
    KeyPair key = newKeyPair();
    List<GeneralName> names = new ArrayList<>();
    for (String n : altNames) {
      boolean ipLiteral = n.matches("[0-9.]+") || n.contains(":");
      names.add(new GeneralName(ipLiteral ? GeneralName.iPAddress : GeneralName.dNSName, n));
    }
    X509Certificate cert = sign(key, new X500Name("CN=" + subject), caKey, caName, notBefore, notAfter, false, names);
    String base = name + "-" + subject + "-" + SERIAL.incrementAndGet();
    // the chain a Secret's tls.crt holds: leaf, then the issuer
    Path chain = write(base + ".crt", pem("CERTIFICATE", encoded(cert)) + pem("CERTIFICATE", encoded(caCertificate)));
    Path keyFile = write(base + ".key", pem("PRIVATE KEY", key.getPrivate().getEncoded()));
    return new Identity(chain, keyFile);
  }

  /** TLS options of a server (or a process that serves and dials) presenting {@code identity} and trusting this CA. */
  public TlsOptions options(Identity identity) {
    return new TlsOptions().certificateChain(identity.certificateChain()).privateKey(identity.privateKey())
        .trustedCertificates(caFile);
  }

  /** TLS options of a client that trusts this CA and presents no certificate. */
  public TlsOptions trustingClient() {
    return new TlsOptions().trustedCertificates(caFile);
  }

  private static KeyPair newKeyPair() {
    try {
      KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
      g.initialize(new ECGenParameterSpec("secp256r1"));
      return g.generateKeyPair();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  private static X509Certificate sign(KeyPair subjectKey, X500Name subject, KeyPair issuerKey, X500Name issuer,
      Instant notBefore, Instant notAfter, boolean ca, List<GeneralName> altNames) {
    try {
      X509v3CertificateBuilder b = new JcaX509v3CertificateBuilder(issuer, BigInteger.valueOf(SERIAL.incrementAndGet()),
          Date.from(notBefore), Date.from(notAfter), subject, subjectKey.getPublic());
      b.addExtension(Extension.basicConstraints, true, new BasicConstraints(ca));
      if (ca) {
        b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
      } else {
        b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature | KeyUsage.keyAgreement));
        b.addExtension(Extension.extendedKeyUsage, false,
            new ExtendedKeyUsage(new KeyPurposeId[] {KeyPurposeId.id_kp_serverAuth, KeyPurposeId.id_kp_clientAuth}));
        if (!altNames.isEmpty()) {
          b.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(altNames.toArray(new GeneralName[0])));
        }
      }
      return new JcaX509CertificateConverter().getCertificate(
          b.build(new JcaContentSignerBuilder("SHA256withECDSA").build(issuerKey.getPrivate())));
    } catch (IOException | GeneralSecurityException | OperatorCreationException e) {
      throw new IllegalStateException("cannot issue a test certificate for " + subject, e);
    }
  }

  private static byte[] encoded(X509Certificate cert) {
    try {
      return cert.getEncoded();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  private static String pem(String type, byte[] der) {
    return "-----BEGIN " + type + "-----\n"
        + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der)
        + "\n-----END " + type + "-----\n";
  }

  private Path write(String file, String content) {
    try {
      return Files.writeString(dir.resolve(file), content, StandardCharsets.US_ASCII);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
