using Appliance.Client;
using Appliance.Fs.Api;
using Appliance.Fs.Session;
using Appliance.Platform.Native;
using Appliance.Tests.Support;

namespace Appliance.Fs.Cluster.Tests;

/// <summary>One in-process cluster (3 monitors, 3 OSDs on loopback) with a metadata pool and a data pool, shared
/// by a test class; each test formats a filesystem of its own name in them.</summary>
public sealed class ClusterFsFixture : IAsyncLifetime
{
    public const string MetaPool = "fs.meta";
    public const string DataPool = "fs.data";

    internal LoopbackCluster Cluster { get; } = new();

    public ClusterClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await Cluster.StartWithPoolsAsync([MetaPool, DataPool], pgNum: 8);
        Client = await ClusterClient.ConnectAsync(Cluster.MonitorAddresses, "client.admin", Cluster.Admin.Key);
    }

    public async Task DisposeAsync()
    {
        if (Client is not null)
        {
            await Client.DisposeAsync();
        }
        await Cluster.DisposeAsync();
    }

    private int _next;

    /// <summary>A new formatted filesystem (root directory 0755, root's).</summary>
    public async Task<MetaClient> NewFsAsync(string what)
    {
        var name = $"{what}{Interlocked.Increment(ref _next)}";
        var meta = new MetaClient(Client.OpenPool(MetaPool), name, TimeSpan.FromSeconds(20));
        var r = await meta.FormatAsync(0x1ED, 0, 0, default);
        Assert.True(r.IsOk, $"format: errno {r.Errno}");
        return meta;
    }

    /// <summary>A new filesystem in the registry too, so `appliance fs mount|check NAME` finds it.</summary>
    public async Task<MetaClient> NewRegisteredFsAsync(string what)
    {
        var name = $"{what}{Interlocked.Increment(ref _next)}";
        Assert.True(await FsRegistry.CreateAsync(Client, new FsRecord(name, MetaPool, DataPool, DataStriper.DefaultStripe), TimeSpan.FromSeconds(20), default));
        return new MetaClient(Client.OpenPool(MetaPool), name, TimeSpan.FromSeconds(20));
    }

    public ClusterFileSystem FileSystem(MetaClient meta, ClusterClient? client = null, ClusterFsOptions? options = null) =>
        new(meta, (client ?? Client).OpenPool(DataPool), async ct =>
        {
            await using var mon = Cluster.MonClient();
            return PoolSpace.From(await mon.GetDfAsync(ct), Client.OsdMap!, DataPool);
        }, options);
}

/// <summary>A cluster filesystem mounted by the kernel at a fresh temporary directory, served in this process.
/// Dispose unmounts (lazily if busy) and removes the directory.</summary>
public sealed class ClusterMount : IAsyncDisposable
{
    private ClusterMount(string path, FuseSession session, IFuseFileSystem fs)
    {
        Path = path;
        Session = session;
        _fs = fs;
    }

    private readonly IFuseFileSystem _fs;

    /// <summary>Coherence with the other mounts of its filesystem, when started with <see cref="StartCoherentAsync"/>.</summary>
    public Coherence? Coherence { get; private set; }

    /// <summary>What its coherence logged (failures to notify or to watch), for a failing test to show.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> Log { get; } = new();

    /// <summary>Its coherence's counters and log, for a failing test's message.</summary>
    public string Describe() => Coherence is not { } c ? "not coherent" :
        $"sent {c.Sent}, skipped {c.Skipped}, applied {c.Applied}, company {c.HasCompany}; log: {string.Join(" | ", Log)}";

    /// <summary>Mounts <paramref name="fs"/> and has it tell other mounts its changes and apply theirs, as `fs mount`
    /// does (mount id <paramref name="id"/>).</summary>
    public static async Task<ClusterMount> StartCoherentAsync(ClusterFileSystem fs, MetaClient meta, string id)
    {
        var m = Start(fs);
        m.Coherence = new Coherence(meta.Pool, meta.FsName, id, line => m.Log.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} {line}"));
        await m.Coherence.StartAsync(m.Session, default);
        fs.Coherence = m.Coherence;
        return m;
    }

    public string Path { get; }

    public FuseSession Session { get; }

    public static ClusterMount Start(IFuseFileSystem fs, FuseOptions? options = null)
    {
        var path = NewDirectory("mnt");
        try
        {
            return new ClusterMount(path, FuseSession.Mount(fs, path, options ?? new FuseOptions()), fs);
        }
        catch
        {
            Directory.Delete(path);
            throw;
        }
    }

    /// <summary>Detaches whatever is still mounted at <paramref name="path"/> (lazily) and removes the directory; for
    /// a test's cleanup, so it never fails.</summary>
    public static void DetachAndRemove(string path)
    {
        if (File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ') is { Length: > 4 } f && f[4] == path))
        {
            try
            {
                Posix.umount2(path, Constants.MNT_DETACH);
            }
            catch (PlatformException)
            {
            }
        }
        try
        {
            Directory.Delete(path);
        }
        catch (IOException)
        {
        }
    }

    public static string NewDirectory(string what)
    {
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"appliance-cfs-{what}-{Guid.NewGuid().ToString("N")[..10]}");
        Directory.CreateDirectory(path);
        return path;
    }

    public string P(string relative) => System.IO.Path.Combine(Path, relative);

    public async ValueTask DisposeAsync()
    {
        if (Coherence is not null)
        {
            await Coherence.DisposeAsync();
        }
        await Session.DisposeAsync();
        ClusterMount.DetachAndRemove(Path);
        if (_fs is ClusterFileSystem cluster)
        {
            // As `fs mount` ends: orphans waiting for their purge are purged now, not by a timer after the test moved on
            // (an fs check then would list an inode object and find it gone when it reads it).
            using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await cluster.FlushPurgesAsync(bound.Token);
        }
    }
}
