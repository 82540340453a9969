using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Appliance.BlockDev.Nbd.Server;

namespace Appliance.BlockDev.Tests.Clients;

/// <summary>STARTTLS with a real client: nbdinfo verifies our certificate against a CA file and reads over TLS.</summary>
public sealed class TlsClientTests
{
    [Fact]
    public async Task Nbdinfo_negotiates_tls_and_a_plain_client_is_refused_when_tls_is_required()
    {
        var nbdinfo = Tools.Require("nbdinfo", "libnbd-bin");
        var qemuIo = Tools.Require("qemu-io", "qemu-utils");
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        await using var s = await TestServer.StartAsync(
            (cat, log) => new NbdServerOptions { Catalog = cat, Log = log, TlsCertificate = cert, TlsRequired = true }, ("disk", 8L << 20));
        // libnbd looks for ca-cert.pem in the directory named by tls-certificates.
        var pki = Path.Combine(s.Dir, "pki");
        Directory.CreateDirectory(pki);
        await File.WriteAllTextAsync(Path.Combine(pki, "ca-cert.pem"), cert.ExportCertificatePem());
        var r = await Tools.RunOkAsync(nbdinfo, [$"nbds://localhost:{s.Tcp.Port}/disk?tls-certificates={pki}"]);
        Assert.Contains("with TLS", r.Stdout);
        Assert.Contains("export-size: 8388608", r.Stdout);
        var plain = await Tools.RunAsync(nbdinfo, [s.TcpUri("disk")]);
        Assert.NotEqual(0, plain.ExitCode);
        // qemu without TLS cannot get in either (EXPORT_NAME or GO before STARTTLS are refused).
        var q = await Tools.RunAsync(qemuIo, ["-f", "raw", "-c", "read 0 512", s.TcpUri("disk")]);
        Assert.NotEqual(0, q.ExitCode);
    }
}
