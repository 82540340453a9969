using System.Net;
using Appliance.BlockDev.Images;
using Appliance.BlockDev.Nbd.Server;

namespace Appliance.BlockDev.Tests;

/// <summary>A temp directory of local images and a real NbdServer on loopback TCP and a unix socket in it.</summary>
public sealed class TestServer : IAsyncDisposable
{
    private readonly List<string> _log;

    private TestServer(string dir, NbdServer server, IPEndPoint tcp, string unix, LocalImageStore store, List<string> log)
    {
        _log = log;
        Dir = dir;
        Server = server;
        Tcp = tcp;
        UnixPath = unix;
        Store = store;
    }

    public string Dir { get; }

    public string ImageDir => Path.Combine(Dir, "images");

    public NbdServer Server { get; }

    public IPEndPoint Tcp { get; }

    public string UnixPath { get; }

    public LocalImageStore Store { get; }

    public IReadOnlyList<string> Log
    {
        get
        {
            lock (_log)
            {
                return [.. _log];
            }
        }
    }

    /// <summary>nbd://127.0.0.1:PORT/NAME</summary>
    public string TcpUri(string name) => $"nbd://127.0.0.1:{Tcp.Port}/{name}";

    /// <summary>nbd+unix:///NAME?socket=PATH</summary>
    public string UnixUri(string name) => $"nbd+unix:///{name}?socket={UnixPath}";

    /// <summary>Starts a server over a fresh image directory holding <paramref name="images"/>.</summary>
    /// <param name="make">Builds the options from the catalog and the log sink (default: all defaults).</param>
    /// <param name="images">Images to create first: name and size.</param>
    public static async Task<TestServer> StartAsync(Func<IImageCatalog, Action<string>, NbdServerOptions>? make = null, params (string Name, long Size)[] images)
    {
        var dir = Path.Combine(Path.GetTempPath(), "nbdtest-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        var store = new LocalImageStore(Path.Combine(dir, "images"));
        foreach (var (name, size) in images)
        {
            store.Create(name, size);
        }
        var log = new List<string>();
        void Sink(string line)
        {
            lock (log)
            {
                log.Add(line);
            }
        }
        var options = make?.Invoke(store, Sink) ?? new NbdServerOptions { Catalog = store, Log = Sink };
        var server = new NbdServer(options);
        var tcp = server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0));
        var unix = Path.Combine(dir, "nbd.sock");
        server.ListenUnix(unix);
        await Task.Yield();
        return new TestServer(dir, server, tcp, unix, store, log);
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
