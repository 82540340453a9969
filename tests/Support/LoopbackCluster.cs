using System.Net;
using System.Net.Sockets;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Daemon;
using Appliance.Osd.Daemon;
using Appliance.Osd.Protocol;
using Appliance.Paxos.Core;
using Appliance.Platform.Devices;
using Appliance.Store;
using Appliance.Wire.Auth;

namespace Appliance.Tests.Support;

/// <summary>
/// A whole cluster in the test's process: three monitors and OSD daemons on file-backed disks, talking over loopback
/// through the messenger with tickets. CONF_DIR (<see cref="ConfDir"/>) holds cluster.conf and the keyrings as
/// `appliance mon bootstrap` and `osd create` leave them, so clients (the cluster client, the CLI) find it as
/// on a node. Linked into the suites that need it (tests/Osd.Tests, tests/Cli.Tests, tests/Fs.Cluster.Tests); see
/// tests/README.md.
/// </summary>
internal sealed class LoopbackCluster : IAsyncDisposable
{
    /// <summary>Short Paxos timings: elections and leases settle within a second on loopback.</summary>
    private static readonly PaxosOptions Fast = new()
    {
        HeartbeatInterval = TimeSpan.FromMilliseconds(50),
        LeaseDuration = TimeSpan.FromMilliseconds(400),
        ElectionTimeout = TimeSpan.FromMilliseconds(500),
    };

    public readonly TempDir Dir = new();
    public readonly ClusterConf Conf;
    public readonly List<MonitorDaemon> Monitors = [];
    public readonly Dictionary<int, OsdDaemon> Osds = [];
    /// <summary>What each OSD logged (its latest start's).</summary>
    public readonly Dictionary<int, MemoryLoggers> OsdLogs = [];

    public LoopbackCluster()
    {
        Conf = ClusterConf.Bootstrap(ConfDir, [.. Enumerable.Range(0, 3).Select(i => ($"{(char)('a' + i)}", $"127.0.0.1:{FreePort()}"))], DateTimeOffset.UtcNow);
    }

    public string ConfDir => Path.Combine(Dir.Path, "conf");

    public KeyringEntry Admin => Keyring.Load(Path.Combine(ConfDir, ClusterConf.AdminKeyringName)).Entries.Single();

    public IEnumerable<IPEndPoint> MonitorAddresses => Conf.Monitors.Select(m => IPEndPoint.Parse(m.Address));

    public MonClient MonClient() => new(MonitorAddresses, "client.admin", Admin.Key) { Deadline = TimeSpan.FromSeconds(20) };

    private static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    /// <summary>Monitors, <paramref name="osds"/> OSDs (created and started), and replicated pools of size 3
    /// (min 2) whose every PG is active+clean when this returns.</summary>
    /// <summary>Monitors, <paramref name="osds"/> new OSDs and the pools (3 copies, min_size 2), every PG clean;
    /// returns the OSDs' ids.</summary>
    public async Task<IReadOnlyList<int>> StartWithPoolsAsync(IReadOnlyList<string> pools, int osds = 3, int pgNum = 16)
    {
        await StartMonitorsAsync();
        await using var admin = MonClient();
        var ids = new List<int>();
        for (var i = 0; i < osds; i++)
        {
            ids.Add(await CreateOsdAsync(admin));
        }
        foreach (var id in ids)
        {
            await StartOsdAsync(id);
        }
        foreach (var pool in pools)
        {
            var created = await admin.CommandAsync(new PoolCreate(pool, Size: 3, MinSize: 2, PgNum: pgNum));
            Assert.True(created.Status == MonReplyStatus.Ok, created.Message);
        }
        await WaitCleanAsync();
        return ids;
    }

    public async Task StartMonitorsAsync()
    {
        var monKey = Keyring.Load(Path.Combine(ConfDir, ClusterConf.MonKeyringName)).Find(ClusterConf.MonEntity)!.Key;
        foreach (var m in Conf.Monitors)
        {
            var d = new MonitorDaemon(new MonitorDaemonOptions
            {
                Name = m.Name,
                DataDirectory = Path.Combine(Dir.Path, $"mon-{m.Name}"),
                Conf = Conf,
                MonKey = monKey,
                Admin = Admin,
                Paxos = Fast,
            }, new MemoryLoggers($"mon.{m.Name}"));
            await d.StartAsync();
            Monitors.Add(d);
        }
    }

    /// <summary>What `appliance osd create` does: an id and key from the monitors, the store, the keyring.</summary>
    public async Task<int> CreateOsdAsync(MonClient admin)
    {
        var uuid = Guid.NewGuid();
        var key = Secret.Generate();
        var reply = await admin.CommandAsync(new OsdCreate(uuid, key));
        Assert.True(reply.Status == MonReplyStatus.Ok, reply.Message);
        var id = BitConverter.ToInt32(reply.Data!);
        var path = Path.Combine(Dir.Path, $"osd.{id}.disk");
        await using (var f = new FileStream(path, FileMode.CreateNew))
        {
            f.SetLength(256L << 20);
        }
        await using (var dev = FileDevice.Open(path))
        {
            await ObjectStore.MkfsAsync(dev, new MkfsOptions { OsdId = id, ClusterId = Conf.Fsid, StoreId = uuid });
        }
        var ring = new Keyring();
        ring.Add(new KeyringEntry($"osd.{id}", key, new Dictionary<string, string> { ["mon"] = "allow rx", ["osd"] = "allow *" }));
        ring.Save(OsdDaemon.KeyringPath(ConfDir, id));
        return id;
    }

    /// <summary>The messenger settings OSDs started from now on get (a test injects transport faults here).</summary>
    public Appliance.Wire.Messenger.MessengerOptions OsdMessenger { get; set; } = new();

    /// <summary>Starts osd.<paramref name="id"/> (host node<c>ID</c>, messenger <see cref="OsdMessenger"/>);
    /// <paramref name="configure"/> may change its options.</summary>
    public async Task StartOsdAsync(int id, Func<OsdDaemonOptions, OsdDaemonOptions>? configure = null)
    {
        var options = new OsdDaemonOptions(id, Path.Combine(Dir.Path, $"osd.{id}.disk"), ConfDir) { Host = $"node{id}", Messenger = OsdMessenger };
        var loggers = new MemoryLoggers($"osd.{id}");
        OsdLogs[id] = loggers;
        var d = new OsdDaemon(configure?.Invoke(options) ?? options, loggers);
        await d.StartAsync();
        Osds[id] = d;
    }

    /// <summary>Ends an OSD as a crash would: its sockets close, the monitors are not told.</summary>
    public async Task KillOsdAsync(int id)
    {
        if (Osds.Remove(id, out var d))
        {
            await d.DisposeAsync();
        }
    }

    /// <summary>Waits (bounded) until every PG of every pool is active+clean on its primary and every running OSD
    /// is up in the newest map.</summary>
    public async Task WaitCleanAsync(int seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        var pending = new List<string>();
        while (DateTime.UtcNow < deadline)
        {
            pending.Clear();
            var maps = Osds.Values.Select(o => o.Service!.Map).Where(m => m is not null).ToList();
            var map = maps.MaxBy(m => m!.Epoch);
            if (map is not null)
            {
                var placement = new OsdPlacement(map);
                foreach (var pool in map.Pools.Values)
                {
                    for (var s = 0u; s < (uint)pool.PgNum; s++)
                    {
                        var p = placement.Place(pool, s);
                        var state = Osds.TryGetValue(p.Primary, out var o) && o.Service!.Map?.Epoch == map.Epoch ? o.Service.FindPg(p.Pg)?.StateText : null;
                        if (state != "active+clean")
                        {
                            pending.Add($"{p.Pg}:{state ?? "?"}");
                        }
                    }
                }
                if (pending.Count == 0 && map.Osds.Values.Count(o => o.Up) == Osds.Count)
                {
                    return;
                }
            }
            await Task.Delay(20);
        }
        // What the OSDs said about peering, so a failure in CI can be diagnosed from its message alone.
        var said = OsdLogs.Values.SelectMany(l => l.Lines)
            .Where(l => l.Contains("peering", StringComparison.Ordinal) || l.Contains("Warning", StringComparison.Ordinal) || l.Contains("Error", StringComparison.Ordinal))
            .TakeLast(60);
        Assert.Fail($"not active+clean after {seconds} s: {string.Join(' ', pending.Take(12))}\nOSD log lines about peering, warnings and errors (the last 60):\n{string.Join('\n', said)}");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var id in Osds.Keys.ToList())
        {
            await KillOsdAsync(id);
        }
        foreach (var m in Monitors)
        {
            await m.StopAsync(false);
        }
        Dir.Dispose();
    }
}
