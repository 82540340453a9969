using System.Globalization;
using Appliance.Maps;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Maps;
using Appliance.Wire.Auth;

namespace Appliance.Monitor.Tests.Maps;

/// <summary>A cluster driven by commands the way the leader drives it: execute, apply the increment, keep the
/// increments (what Paxos would carry).</summary>
internal sealed class Cluster
{
    public static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public Cluster(string failureDomain = "host", int monitors = 3)
    {
        Now = T0;
        State = ClusterState.Bootstrap(Guid.Parse("5f0c2a57-9d2e-4f3b-8a51-0d6f3c1e2b44"),
            Enumerable.Range(0, monitors).Select(i => ($"m{(char)('a' + i)}", $"10.0.0.{i + 1}:6789")), Now,
            [new AuthEntity("client.admin", Key(0), Caps2(("mon", "allow *"), ("osd", "allow *")))], failureDomain);
        Initial = State;
        Liveness = OsdLiveness.Start(Now);
    }

    public ClusterState Initial { get; }
    public ClusterState State { get; private set; }
    public OsdLiveness Liveness { get; private set; }
    public DateTimeOffset Now { get; set; }
    public List<ClusterIncrement> Increments { get; } = [];

    public MonOutcome Run(MonCommand command, string who = "client.admin")
    {
        var outcome = MonOperations.Execute(State, Liveness, command, who, Now);
        Liveness = outcome.Liveness;
        if (outcome.Increment is not null)
        {
            State = State.Apply(outcome.Increment);
            Increments.Add(outcome.Increment);
        }
        return outcome;
    }

    /// <summary>Runs a command that must succeed and change something.</summary>
    public MonOutcome Must(MonCommand command, string who = "client.admin")
    {
        var o = Run(command, who);
        Assert.True(o.Ok, $"{command.Describe()}: {o.Error}");
        Assert.NotNull(o.Increment);
        return o;
    }

    /// <summary>Runs a command that must be refused with <paramref name="code"/>; the state must not change.</summary>
    public MonError Refused(MonCommand command, MonErrorCode code, string? messagePart = null)
    {
        var before = State.ToBytes();
        var o = Run(command);
        Assert.False(o.Ok, $"{command.Describe()} was accepted: {o.Message}");
        Assert.Null(o.Increment);
        Assert.Equal(code, o.Error!.Code);
        if (messagePart is not null)
        {
            Assert.Contains(messagePart, o.Error.Message, StringComparison.Ordinal);
        }
        Assert.Equal(before, State.ToBytes());
        return o.Error;
    }

    public void Boot(int id, string host, uint weight = 0x10000) => Must(new OsdBoot(id, $"10.1.0.{id}:6800", host, weight));

    public static Secret Key(int seed)
    {
        var b = new byte[Secret.Size];
        new Random(seed).NextBytes(b);
        return new Secret(b);
    }

    public static Dictionary<string, string> Caps(params (string Service, string Caps)[] caps) =>
        caps.ToDictionary(c => c.Service, c => c.Caps, StringComparer.Ordinal);

    public static System.Collections.Immutable.ImmutableSortedDictionary<string, string> Caps2(params (string Service, string Caps)[] caps) =>
        System.Collections.Immutable.ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, Caps(caps));
}

/// <summary>Random commands, valid and invalid, for the property-style tests.</summary>
internal static class RandomCommands
{
    private static readonly string[] Hosts = ["h0", "h1", "h2", "h3"];
    private static readonly string[] PoolNames = ["vm", "fs", "data", "ec", "bad name", "x.y"];
    private static readonly string[] Entities = ["client.a", "client.b", "osd.1", "mgr.x", "bogus"];
    private static readonly string[] CapStrings = ["allow r", "allow rw pool=vm", "allow *", "allow rx", "deny all", "allow rr"];

    public static MonCommand Next(Random rng, Cluster c)
    {
        string Num(int lo, int hi) => rng.Next(lo, hi).ToString(CultureInfo.InvariantCulture);
        switch (rng.Next(22))
        {
            case 16:
                return new OsdAlive(rng.Next(0, 8), (uint)rng.Next(0, (int)c.State.Osd.Epoch + 3));
            case 17:
                {
                    var pool = c.State.Osd.Pools.Values.Select(p => p.Id).DefaultIfEmpty(1).ElementAt(rng.Next(Math.Max(1, c.State.Osd.Pools.Count)));
                    var acting = Enumerable.Range(0, rng.Next(0, 4)).Select(_ => rng.Next(0, 9)).ToList();
                    return new PgTemp(rng.Next(0, 8), [new PgTempChange(new PgId(pool, (uint)rng.Next(0, 40)), acting, rng.Next(3) == 0 && acting.Count > 0 ? acting[0] : -1)]);
                }
            case 18:
                return rng.Next(3) == 0
                    ? new OsdBlocklistRemove($"client.{Pick(rng, ["a", "b"])}:{rng.Next(1, 3)}")
                    : new OsdBlocklistAdd(Pick(rng, ["client.a", "client.b", "bogus"]) + ":" + Pick(rng, ["1", "2", "x"]), rng.Next(0, 5000));
            case 19:
                return new OsdCreate(new Guid(rng.Next(1, 4), 0, 0, new byte[8]), Cluster.Key(rng.Next(2)), rng.Next(4) == 0 ? rng.Next(0, 10) : null);
            case 20:
                return new OsdFailureReport(rng.Next(0, 8), rng.Next(0, 8), Immediate: true);
            case 21:
                return new PoolSet(Pick(rng, PoolNames), "pgp_num", Num(0, 300));
            case 0:
                return rng.Next(3) == 0
                    ? new PoolCreate(Pick(rng, PoolNames), PoolType.Erasure, K: rng.Next(1, 6), M: rng.Next(0, 4), PgNum: rng.Next(3) == 0 ? rng.Next(0, 300) : null)
                    : new PoolCreate(Pick(rng, PoolNames), Size: rng.Next(0, 5), MinSize: rng.Next(3) == 0 ? rng.Next(0, 5) : null,
                        QuotaMaxBytes: (ulong)rng.Next(0, 1000), QuotaMaxObjects: (ulong)rng.Next(0, 10));
            case 1:
                return new PoolRemove(Pick(rng, PoolNames));
            case 2:
            case 3:
                return new PoolSet(Pick(rng, PoolNames), Pick(rng, ["size", "min_size", "pg_num", "quota_max_bytes", "quota_max_objects", "colour"]),
                    Pick(rng, [Num(0, 5), Num(0, 300), "auto", "10G", "x"]));
            case 4:
            case 5:
                var id = rng.Next(0, 8);
                return new OsdBoot(id, $"10.1.0.{id}:{rng.Next(6800, 6803)}", Pick(rng, Hosts), (uint)rng.Next(0x8000, 0x30000));
            case 6:
                return new OsdFailureReport(rng.Next(0, 8), rng.Next(0, 8));
            case 7:
                c.Now += TimeSpan.FromSeconds(rng.Next(0, 900));
                return rng.Next(3) == 0 ? new ServiceKeyRotate(Pick(rng, ["osd", "mgr", "mon"]), Cluster.Key(rng.Next(100))) : new OsdTick();
            case 8:
                return rng.Next(2) == 0 ? new OsdOut([rng.Next(0, 9)]) : new OsdIn([rng.Next(0, 9)]);
            case 9:
                return new OsdBeacon(rng.Next(0, 8));
            case 10:
                return new AuthAdd(Pick(rng, Entities), RandomCaps(rng), Cluster.Key(rng.Next(4)));
            case 11:
                return rng.Next(2) == 0 ? new AuthCaps(Pick(rng, Entities), RandomCaps(rng)) : new AuthRemove(Pick(rng, Entities));
            case 12:
            case 13:
                return rng.Next(4) == 0
                    ? new ConfigRemove(Pick(rng, ["mon_osd_down_out_interval", "osd_heartbeat_grace", "nope"]))
                    : new ConfigSet(Pick(rng, ["mon_osd_down_out_interval", "mon_osd_min_down_reporters", "osd_heartbeat_grace", "mon_osd_full_ratio", "mon_allow_pool_delete", "nope"]),
                        Pick(rng, [Num(0, 3), Num(1, 2000), "5m", "0.5", "true", "maybe"]));
            case 14:
                return new MonAdd($"m{(char)('a' + rng.Next(0, 6))}", $"10.0.0.{rng.Next(1, 8)}:6789");
            default:
                return new MonRemove($"m{(char)('a' + rng.Next(0, 6))}");
        }
    }

    private static Dictionary<string, string> RandomCaps(Random rng)
    {
        var caps = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var service in new[] { "mon", "osd", "xyz" })
        {
            if (rng.Next(service == "xyz" ? 8 : 2) == 0)
            {
                caps[service] = Pick(rng, CapStrings);
            }
        }
        return caps;
    }

    private static T Pick<T>(Random rng, IReadOnlyList<T> items) => items[rng.Next(items.Count)];

    /// <summary>A cluster after <paramref name="steps"/> random commands.</summary>
    public static Cluster Drive(int seed, int steps)
    {
        var rng = new Random(seed);
        var c = new Cluster(rng.Next(2) == 0 ? "host" : "osd");
        for (var i = 0; i < steps; i++)
        {
            c.Run(Next(rng, c));
        }
        return c;
    }
}
