using System.Collections.Concurrent;
using System.Threading.Channels;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Osd.Daemon;
using Appliance.Osd.Ops;
using Appliance.Osd.Protocol;
using Appliance.Platform.Devices;
using Appliance.Store;
using Appliance.Wire.Auth;
using Microsoft.Extensions.Logging.Abstractions;

namespace Appliance.Osd.Tests;

/// <summary>
/// OSDs in one process: each an <see cref="OsdService"/> over its own store on a memory device, joined by an
/// in-process network (one ordered queue per pair of OSDs, as the messenger gives; a stopped OSD is unreachable).
/// Maps are made by the monitors' own operations (<see cref="MonOperations"/>) without running monitors.
/// </summary>
internal sealed class InProcessCluster : IAsyncDisposable
{
    private readonly ConcurrentDictionary<int, OsdService> _osds = new();
    private readonly ConcurrentDictionary<int, MemoryDevice> _devices = new();
    private readonly ConcurrentDictionary<(int From, int To), Channel<(ushort Type, byte[] Payload)>> _links = new();
    private ClusterState _state;
    private OsdLiveness _liveness;
    private readonly DateTimeOffset _now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private long _tid;
    // Maps change from the test and from PGs asking for up_thru at once: one at a time, published in order.
    private readonly object _gate = new();

    public InProcessCluster()
    {
        _state = ClusterState.Bootstrap(Guid.NewGuid(), [("a", "127.0.0.1:6789")], _now,
            [new AuthEntity("client.admin", new Secret(new byte[Secret.Size]), System.Collections.Immutable.ImmutableSortedDictionary.CreateRange(new Dictionary<string, string> { ["mon"] = "allow *", ["osd"] = "allow *" }))], "osd");
        _liveness = OsdLiveness.Start(_now);
    }

    public OsdMap Map => _state.Osd;

    /// <summary>Requests (from, to, type, payload) for which this returns true are never delivered: the sender waits out
    /// its timeout, as with a peer that stopped answering.</summary>
    public Func<int, int, ushort, ReadOnlyMemory<byte>, bool>? Withhold { get; set; }

    public OsdService Osd(int id) => _osds[id];

    public IEnumerable<OsdService> Running => _osds.Values;

    /// <summary>Runs a monitor command the way the leader would and gives the new map to every OSD.</summary>
    public void Command(MonCommand c)
    {
        lock (_gate)
        {
            Must(c);
            Publish();
        }
    }

    private void Must(MonCommand c)
    {
        var o = Try(c);
        Assert.True(o.Ok, $"{c.Describe()}: {o.Error}");
    }

    private MonOutcome Try(MonCommand c)
    {
        lock (_gate)
        {
            var o = MonOperations.Execute(_state, _liveness, c, "client.admin", _now);
            _liveness = o.Liveness;
            if (o.Ok && o.Increment is not null)
            {
                _state = _state.Apply(o.Increment);
            }
            return o;
        }
    }

    /// <summary>Runs a command as the leader would, without asserting it was accepted (its outcome is returned).</summary>
    public MonOutcome TryCommand(MonCommand c)
    {
        var o = Try(c);
        Publish();
        return o;
    }

    /// <summary>A PG's primary asks for up_thru (OsdAlive), as the daemon does through the monitors.</summary>
    private Task AliveAsync(int id, uint want)
    {
        lock (_gate)
        {
            if (Map.FindOsd(id) is not { Up: true } me || me.UpThru >= want)
            {
                return Task.CompletedTask;
            }
            Try(new OsdAlive(id, Math.Max(want, Map.Epoch)));
            Publish();
        }
        return Task.CompletedTask;
    }

    /// <summary>Starts OSDs 0..n-1 (each a fresh store) and creates a replicated pool.</summary>
    public async Task<PoolInfo> StartAsync(int osds, int size, int minSize, int pgNum)
    {
        for (var i = 0; i < osds; i++)
        {
            await StartOsdAsync(i, fresh: true);
            Must(new OsdBoot(i, $"127.0.0.1:{6800 + i}", "host0", 0x10000));
        }
        Must(new PoolCreate("data", Size: size, MinSize: minSize, PgNum: pgNum));
        Publish();
        await WaitActiveCleanAsync();
        return Map.FindPool("data")!;
    }

    public async Task StartOsdAsync(int id, bool fresh)
    {
        if (fresh)
        {
            var dev = new MemoryDevice(256L << 20, 4096, $"osd.{id}");
            await ObjectStore.MkfsAsync(dev, new MkfsOptions { OsdId = id });
            _devices[id] = dev;
        }
        var store = await ObjectStore.MountAsync(_devices[id]);
        var osd = new OsdService(id, store, new Peers(this, id), new ObjectClassRegistry(), TimeProvider.System, NullLogger.Instance);
        osd.RequestUpThruAsync = (want, _) => Task.Run(() => AliveAsync(id, want));
        osd.LoadExistingPgs();
        lock (_gate)
        {
            _osds[id] = osd;
            osd.ApplyMap(Map);
        }
    }

    /// <summary>Stops an OSD as a crash would (its store's unflushed writes are kept: a process death, not a power
    /// cut), without telling the maps.</summary>
    public async Task KillAsync(int id)
    {
        if (_osds.TryRemove(id, out var osd))
        {
            await osd.DisposeAsync();
            await osd.Store.DisposeAsync();
        }
    }

    /// <summary>Marks OSDs down or up in a new map and gives it to every running OSD.</summary>
    public void SetUp(int id, bool up)
    {
        lock (_gate)
        {
            var m = Map;
            var info = m.Osds[id] with { Up = up, UpFrom = up && !m.Osds[id].Up ? m.Epoch + 1 : m.Osds[id].UpFrom };
            var next = new OsdMap(m.Epoch + 1, m.Fsid, m.ModifiedMs, m.Osds.SetItem(id, info), m.Pools, m.PoolMax, m.FailureDomain, m.CrushText, m.Crush);
            _state = new ClusterState(_state.Mon, next, _state.Auth, _state.Config, _state.Audit);
            Publish();
        }
    }

    /// <summary>Runs a monitor command and gives the new map to every OSD but <paramref name="skipped"/>, which jumps
    /// over that epoch when the next one is published (as an OSD does whose first map comes after a change).</summary>
    public void CommandWithheldFrom(MonCommand c, int skipped)
    {
        lock (_gate)
        {
            Must(c);
            foreach (var (id, osd) in _osds)
            {
                if (id != skipped)
                {
                    osd.ApplyMap(Map);
                }
            }
        }
    }

    public void Publish()
    {
        lock (_gate)
        {
            foreach (var osd in _osds.Values)
            {
                osd.ApplyMap(Map);
            }
        }
    }

    /// <summary>Waits (bounded) until every PG of every pool is active on its primary with its whole acting set.</summary>
    public async Task WaitActiveCleanAsync(bool clean = true, int timeoutSeconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (true)
        {
            var placement = new OsdPlacement(Map);
            var pending = new List<string>();
            foreach (var pool in Map.Pools.Values)
            {
                for (var s = 0u; s < (uint)pool.PgNum; s++)
                {
                    var p = placement.Place(pool, s);
                    var pg = p.Primary >= 0 && _osds.TryGetValue(p.Primary, out var o) ? o.FindPg(p.Pg) : null;
                    var state = pg?.StateText ?? "unknown";
                    if (clean ? state != "active+clean" : !state.StartsWith("active", StringComparison.Ordinal))
                    {
                        pending.Add($"{p.Pg}:{state}");
                    }
                }
            }
            if (pending.Count == 0)
            {
                return;
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"PGs not {(clean ? "active+clean" : "active")} after {timeoutSeconds} s: {string.Join(" ", pending.Take(10))}");
            }
            await Task.Delay(10);
        }
    }

    /// <summary>Sends a request to the object's primary as a client would: resent with the same tid on TryAgain.</summary>
    public async Task<OsdOpReply> ExecuteAsync(string pool, string name, IReadOnlyList<OsdOp> ops, ulong? tid = null, int timeoutSeconds = 20)
    {
        var myTid = tid ?? (ulong)Interlocked.Increment(ref _tid);
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (true)
        {
            var map = Map;
            var info = map.FindPool(pool)!;
            var placement = new OsdPlacement(map);
            var hash = OsdPlacement.ObjectHash(name);
            var pg = placement.PgOf(info, hash);
            var primary = placement.Place(info, pg.Seed).Primary;
            OsdOpReply reply;
            if (primary >= 0 && _osds.TryGetValue(primary, out var osd))
            {
                var req = new OsdOpRequest(myTid, 42, map.Epoch, pg, name, hash, ops);
                // Through the bytes, as on the wire.
                reply = await osd.HandleClientAsync(OsdOpRequest.FromBytes(req.ToBytes()), "client.admin",
                    new EntityCaps(new Dictionary<string, string> { ["osd"] = "allow *" }), null, CancellationToken.None);
            }
            else
            {
                reply = new OsdOpReply(myTid, OsdResult.TryAgain, map.Epoch, default, 0, []);
            }
            if (reply.Result != OsdResult.TryAgain)
            {
                return reply;
            }
            if (DateTime.UtcNow > deadline)
            {
                return reply;
            }
            await Task.Delay(5);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var id in _osds.Keys.ToList())
        {
            await KillAsync(id);
        }
        foreach (var l in _links.Values)
        {
            l.Writer.TryComplete();
        }
    }

    private sealed class Peers(InProcessCluster cluster, int self) : IOsdPeers
    {
        public ValueTask SendAsync(int osd, ushort type, ReadOnlyMemory<byte> payload, CancellationToken ct)
        {
            if (!cluster._osds.ContainsKey(osd))
            {
                throw new PeerUnavailableException(osd, $"osd.{osd} is down");
            }
            var link = cluster._links.GetOrAdd((self, osd), key =>
            {
                var ch = Channel.CreateUnbounded<(ushort, byte[])>(new UnboundedChannelOptions { SingleReader = true });
                _ = Task.Run(() => cluster.PumpAsync(key.From, key.To, ch.Reader));
                return ch;
            });
            link.Writer.TryWrite((type, payload.ToArray()));
            return ValueTask.CompletedTask;
        }

        public async Task<byte[]> RequestAsync(int osd, ushort type, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken ct)
        {
            if (!cluster._osds.TryGetValue(osd, out var target))
            {
                throw new PeerUnavailableException(osd, $"osd.{osd} is down");
            }
            if (cluster.Withhold?.Invoke(self, osd, type, payload) == true)
            {
                // Never delivered: the sender waits out its timeout (or gives up sooner).
                await Task.Delay(timeout, ct);
                throw new TimeoutException($"osd.{osd} did not answer message {type} (withheld by the test)");
            }
            var answer = await target.HandlePeerAsync(self, type, payload.ToArray(), (_, _) => ValueTask.CompletedTask).WaitAsync(timeout, ct);
            return answer?.Payload ?? throw new PeerUnavailableException(osd, $"osd.{osd} gave no answer to message {type}");
        }
    }

    private async Task PumpAsync(int from, int to, ChannelReader<(ushort Type, byte[] Payload)> reader)
    {
        await foreach (var (type, payload) in reader.ReadAllAsync())
        {
            // A message to an OSD that is gone is lost, as on a real network.
            if (_osds.TryGetValue(to, out var target))
            {
                await target.HandlePeerAsync(from, type, payload, (t, p) =>
                {
                    if (_osds.TryGetValue(from, out var back))
                    {
                        return new ValueTask(back.HandlePeerAsync(to, t, p, (_, _) => ValueTask.CompletedTask));
                    }
                    return ValueTask.CompletedTask;
                });
            }
        }
    }
}
