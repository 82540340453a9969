using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using Appliance.Maps;
using Appliance.Osd.Protocol;
using Appliance.Wire.Auth;

namespace Appliance.Client.Tests;

/// <summary>
/// osdmaps a test publishes, as a subscription would deliver them: each subscriber gets the maps after the one it
/// has, in order. <see cref="Drop"/> ends the current subscriptions with an error (a monitor outage).
/// </summary>
internal sealed class FakeMapSource : IOsdMapSource
{
    private readonly Lock _lock = new();
    private readonly List<OsdMap> _maps = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _drops;

    /// <summary>The epoch each subscription started from (0: none).</summary>
    public ConcurrentQueue<uint> Subscriptions { get; } = new();

    public void Publish(OsdMap map) => Signal(() => _maps.Add(map));

    public void Drop() => Signal(() => _drops++);

    private void Signal(Action change)
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            change();
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
    }

    public async IAsyncEnumerable<OsdMap> WatchOsdMapAsync(OsdMap? have, [EnumeratorCancellation] CancellationToken ct)
    {
        var epoch = have?.Epoch ?? 0;
        Subscriptions.Enqueue(epoch);
        int drops;
        lock (_lock)
        {
            drops = _drops;
        }
        while (true)
        {
            List<OsdMap> next;
            Task changed;
            lock (_lock)
            {
                if (_drops != drops)
                {
                    throw new IOException("the test dropped the subscription");
                }
                next = _maps.Where(m => m.Epoch > epoch).ToList();
                changed = _changed.Task;
            }
            foreach (var map in next)
            {
                epoch = map.Epoch;
                yield return map;
            }
            if (next.Count == 0)
            {
                await changed.WaitAsync(ct);
            }
        }
    }
}

/// <summary>Fake OSDs on loopback, maps about them, and clients of them with real tickets for service "osd".</summary>
internal sealed class TestCluster : IAsyncDisposable
{
    public const string PoolName = "data";
    public const int PoolId = 2;
    public const int PgNum = 8;

    private readonly List<ClusterClient> _clients = [];
    private readonly List<FakeOsd> _retired = [];

    public TestCluster(int osds)
    {
        Secrets.Rotate(DateTimeOffset.UtcNow, TimeSpan.FromHours(2));
        Osds = [.. Enumerable.Range(0, osds).Select(i => new FakeOsd(i, Secrets))];
    }

    public ServiceSecrets Secrets { get; } = new("osd");
    public FakeMapSource Maps { get; } = new();
    public FakeOsd[] Osds { get; }
    public OsdMap? Current { get; private set; }

    /// <summary>Publishes the next epoch: every OSD up at its fake's address unless <paramref name="down"/> says
    /// otherwise; the pool has <paramref name="size"/> copies.</summary>
    public OsdMap Publish(int[]? down = null, int size = 2, int pgNum = PgNum, Func<OsdInfo, OsdInfo>? change = null)
    {
        var epoch = (Current?.Epoch ?? 0) + 1;
        var map = Build(epoch, down ?? [], size, pgNum, change);
        foreach (var osd in Osds)
        {
            osd.Epoch = epoch;
        }
        Current = map;
        Maps.Publish(map);
        return map;
    }

    private OsdMap Build(uint epoch, int[] down, int size, int pgNum, Func<OsdInfo, OsdInfo>? change)
    {
        var crush = CrushLayout.Default("osd");
        var osds = ImmutableSortedDictionary.CreateBuilder<int, OsdInfo>();
        foreach (var osd in Osds)
        {
            crush = CrushLayout.PlaceOsd(crush, osd.Id, $"host{osd.Id}", 0x10000);
            var info = new OsdInfo(osd.Id, osd.Address, $"host{osd.Id}", !down.Contains(osd.Id), true, 0x10000, 1, 0, false);
            osds[osd.Id] = change?.Invoke(info) ?? info;
        }
        var pool = new PoolInfo(PoolId, PoolName, PoolType.Replicated, size, 1, pgNum, false, 0, null, 0, 0, 1);
        return new OsdMap(epoch, Guid.Empty, 0, osds.ToImmutable(), ImmutableSortedDictionary<int, PoolInfo>.Empty.Add(PoolId, pool), PoolId, "osd",
            CrushLayout.ToText(crush), crush);
    }

    /// <summary>Where <paramref name="name"/> lives under <paramref name="map"/> (the test's own placement).</summary>
    public static PgPlacement PlaceObject(OsdMap map, string name)
    {
        var placement = new OsdPlacement(map);
        var pool = map.Pools[PoolId];
        return placement.Place(pool, placement.PgOf(pool, OsdPlacement.ObjectHash(name)).Seed);
    }

    /// <summary>An object name whose PG has <paramref name="primary"/> as primary and a second member under the
    /// current map.</summary>
    public string ObjectOn(int primary, string prefix = "obj")
    {
        for (var i = 0; ; i++)
        {
            var name = $"{prefix}-{i}";
            var p = PlaceObject(Current!, name);
            if (p.Primary == primary && p.Acting.Length >= 2)
            {
                return name;
            }
        }
    }

    public ClusterClient Client(ClusterClientOptions? options = null)
    {
        var client = new ClusterClient(Maps, _ => ValueTask.FromResult(
            Tickets.Issue(Secrets, "client.test", new EntityCaps(new Dictionary<string, string> { ["osd"] = "allow rw" }), DateTimeOffset.UtcNow, TimeSpan.FromHours(1))),
            "client.test", options);
        _clients.Add(client);
        return client;
    }

    /// <summary>Replaces osd.<paramref name="id"/> by a new fake at a new address (a restart elsewhere).</summary>
    public FakeOsd Restart(int id)
    {
        _retired.Add(Osds[id]);
        Osds[id] = new FakeOsd(id, Secrets) { Epoch = Osds[id].Epoch };
        return Osds[id];
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _clients)
        {
            await c.DisposeAsync();
        }
        foreach (var o in Osds.Concat(_retired))
        {
            await o.DisposeAsync();
        }
    }
}
