using System.CommandLine;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Appliance.BlockDev.Images;
using Appliance.BlockDev.Nbd.Server;
using Appliance.Cli.Common;

namespace Appliance.Cli.Commands;

/// <summary>`appliance nbd serve`: serve images to NBD clients (qemu, nbd-client, libnbd tools, fio).</summary>
public static class NbdCommands
{
    /// <summary>The IANA port of NBD.</summary>
    public const int DefaultPort = 10809;

    public static Command Create()
    {
        var nbd = new Command("nbd", "Serve block images over the NBD protocol.");
        MonitorCommands.AddCommon(nbd);
        nbd.Subcommands.Add(Serve());
        return nbd;
    }

    private static Command Serve()
    {
        var local = ImageCommands.LocalOption();
        var listen = new Option<string[]>("--listen")
        {
            Description = $"A TCP address to listen on, ADDR:PORT (e.g. 0.0.0.0:{DefaultPort}, [::]:{DefaultPort}); repeatable. Default 127.0.0.1:{DefaultPort} when no --unix is given.",
            AllowMultipleArgumentsPerToken = false,
        };
        var unix = new Option<string[]>("--unix") { Description = "A unix socket path to listen on; repeatable." };
        var readOnly = new Option<bool>("--read-only") { Description = "Serve every image read-only." };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM certificate offered after NBD_OPT_STARTTLS (needs --tls-key)." };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert." };
        var tlsRequired = new Option<bool>("--tls-required") { Description = "Refuse every option but STARTTLS and ABORT until TLS is up." };
        var lease = new Option<double>("--lease")
        {
            Description = "Seconds an image's lock lasts unless renewed (renewed at a third of it); after a server dies, another may take its images over once it runs out. Default 20.",
            DefaultValueFactory = _ => 20,
        };
        var force = new Option<bool>("--force") { Description = "Take images over from live servers holding them (they are fenced first: the OSDs refuse their writes)." };
        var command = new Command("serve",
            "Serve the cluster's images (export name POOL/IMAGE; authenticating as --id, whose caps decide which pools), or with --local DIR every image " +
            "in DIR, until SIGINT or SIGTERM. A cluster image is locked by the server while a client has it open; one held by another live server is refused, naming it.")
        {
            local, listen, unix, readOnly, tlsCert, tlsKey, tlsRequired, lease, force,
        };
        command.SetAction(async (parse, ct) =>
        {
            var output = TextWriter.Synchronized(parse.InvocationConfiguration.Output);
            var tcp = (parse.GetValue(listen) ?? []).Select(ParseEndpoint).ToList();
            var unixPaths = parse.GetValue(unix) ?? [];
            if (tcp.Count == 0 && unixPaths.Length == 0)
            {
                tcp.Add(new IPEndPoint(IPAddress.Loopback, DefaultPort));
            }
            var certificate = LoadCertificate(parse.GetValue(tlsCert), parse.GetValue(tlsKey), parse.GetValue(tlsRequired));
            var ro = parse.GetValue(readOnly);
            var leaseSeconds = parse.GetValue(lease);
            if (leaseSeconds is < 1 or > 600)
            {
                throw new CliException(ExitCodes.Usage, $"--lease {leaseSeconds}: give 1 to 600 seconds");
            }
            IImageCatalog catalog;
            string what;
            await using var cluster = parse.GetValue(local) is null
                // The owner written into locks: the first address served, which no other live server on this host has.
                ? await ClusterImages.ConnectAsync(parse, $"nbd serve {(unixPaths.Length > 0 ? "unix:" + Path.GetFullPath(unixPaths[0]) : "tcp:" + tcp[0])}",
                    TimeSpan.FromSeconds(leaseSeconds), parse.GetValue(force), ct)
                : null;
            if (cluster is not null)
            {
                catalog = cluster.Store;
                var names = await ImageCommands.RunAsync(() => cluster.Store.ListAsync(null, ct));
                what = $"the cluster's images as {ClusterImages.Instance(cluster.Client)} ({names.Count} now{(names.Count > 0 ? ": " + string.Join(", ", names.Take(10)) + (names.Count > 10 ? ", ..." : "") : "")})";
            }
            else
            {
                var dir = parse.GetRequiredValue(local);
                var store = ImageCommands.Run(() => new LocalImageStore(dir));
                catalog = store;
                var names = store.ListNames();
                what = $"{names.Count} image{(names.Count == 1 ? "" : "s")} of {store.Root}{(names.Count > 0 ? " (" + string.Join(", ", names.Take(10)) + (names.Count > 10 ? ", ..." : "") + ")" : "")}";
            }
            what += $" {(ro ? "read-only" : "read-write")}{(certificate is null ? "" : parse.GetValue(tlsRequired) ? ", TLS required" : ", TLS offered")}";
            await using var server = new NbdServer(new NbdServerOptions
            {
                Catalog = catalog,
                ReadOnly = ro,
                TlsCertificate = certificate,
                TlsRequired = parse.GetValue(tlsRequired),
                Log = line => output.WriteLine(line),
            });
            foreach (var endpoint in tcp)
            {
                IPEndPoint bound;
                try
                {
                    bound = server.ListenTcp(endpoint);
                }
                catch (System.Net.Sockets.SocketException e)
                {
                    throw new CliException(ExitCodes.Failure, $"cannot listen on {endpoint}: {e.Message}; choose another --listen address or stop what uses it");
                }
                output.WriteLine($"nbd: serving {what} on {bound} (nbd://{Host(bound)}/NAME)");
            }
            foreach (var path in unixPaths)
            {
                try
                {
                    server.ListenUnix(path);
                }
                catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
                {
                    throw new CliException(ExitCodes.Failure, $"cannot listen on unix socket {path}: {e.Message}");
                }
                output.WriteLine($"nbd: serving {what} on unix:{path} (nbd+unix:///NAME?socket={path})");
            }
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
            }
            output.WriteLine("nbd: stopping: closing connections after their requests finish");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static string Host(IPEndPoint endpoint) =>
        endpoint.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{endpoint.Address}]:{endpoint.Port}" : endpoint.ToString();

    private static IPEndPoint ParseEndpoint(string text)
    {
        // ADDR:PORT (port 0 picks a free port, shown in the log line); ":PORT" means every IPv4 address.
        var full = text.StartsWith(':') ? "0.0.0.0" + text : text;
        if (full.Contains(':', StringComparison.Ordinal) && IPEndPoint.TryParse(full, out var endpoint) && (full.Contains("]:", StringComparison.Ordinal) || !full.StartsWith('[')))
        {
            return endpoint;
        }
        throw new CliException(ExitCodes.Usage, $"--listen '{text}' is not ADDR:PORT; write it like 127.0.0.1:{DefaultPort} or [::]:{DefaultPort}");
    }

    private static X509Certificate2? LoadCertificate(string? certPath, string? keyPath, bool required)
    {
        if (certPath is null && keyPath is null)
        {
            return required ? throw new CliException(ExitCodes.Usage, "--tls-required needs --tls-cert and --tls-key") : null;
        }
        if (certPath is null || keyPath is null)
        {
            throw new CliException(ExitCodes.Usage, "give both --tls-cert and --tls-key");
        }
        foreach (var p in new[] { certPath, keyPath })
        {
            if (!File.Exists(p))
            {
                throw new CliException(ExitCodes.NotFound, $"{p} does not exist");
            }
        }
        try
        {
            return X509Certificate2.CreateFromPemFile(certPath, keyPath);
        }
        catch (CryptographicException e)
        {
            throw new CliException(ExitCodes.InvalidInput, $"cannot load the TLS certificate {certPath} with key {keyPath}: {e.Message}");
        }
    }
}
