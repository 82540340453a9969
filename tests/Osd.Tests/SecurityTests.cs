using System.Net;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Osd.Protocol;
using Appliance.Wire.Auth;
using Appliance.Tests.Support;
using Appliance.Wire.Messenger;

namespace Appliance.Osd.Tests;

/// <summary>
/// What an OSD refuses, against real daemons: sessions without a valid ticket, operations the session's caps do not
/// allow (nothing changes), and hostile requests (a clear error each; the OSD stays up and serves the next one).
/// </summary>
public sealed class SecurityTests(SecurityTests.Fixture f) : IClassFixture<SecurityTests.Fixture>
{
    /// <summary>One cluster for the class (3 monitors, 3 OSDs, pools data and other): the tests use their own
    /// entities and objects.</summary>
    public sealed class Fixture : IAsyncLifetime
    {
        internal LoopbackCluster Cluster { get; } = new();
        public MonClient Admin { get; private set; } = null!;
        public OsdMap Map { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            await Cluster.StartMonitorsAsync();
            Admin = Cluster.MonClient();
            for (var i = 0; i < 3; i++)
            {
                await Cluster.StartOsdAsync(await Cluster.CreateOsdAsync(Admin));
            }
            foreach (var pool in new[] { "data", "other" })
            {
                var r = await Admin.CommandAsync(new PoolCreate(pool, Size: 3, MinSize: 2, PgNum: 4));
                Assert.True(r.Status == MonReplyStatus.Ok, r.Message);
            }
            await Cluster.WaitCleanAsync();
            Map = Cluster.Osds.Values.Select(o => o.Service!.Map!).MaxBy(m => m.Epoch)!;
        }

        public async Task DisposeAsync()
        {
            await Admin.DisposeAsync();
            await Cluster.DisposeAsync();
        }
    }

    private LoopbackCluster _c => f.Cluster;
    private MonClient _admin => f.Admin;
    private OsdMap _map => f.Map;

    private async Task<Secret> AddClientAsync(string entity, string osdCaps)
    {
        var key = Secret.Generate();
        var r = await _admin.CommandAsync(new AuthAdd(entity, new Dictionary<string, string> { ["mon"] = "allow r", ["osd"] = osdCaps }, key));
        Assert.True(r.Status == MonReplyStatus.Ok, r.Message);
        return key;
    }

    /// <summary>A raw session to the primary of <paramref name="name"/> in <paramref name="pool"/>, as
    /// <paramref name="entity"/>, with tickets from the monitors.</summary>
    private async Task<(MessengerClient Client, OsdOpRequest Template, MonClient Mon)> ConnectAsync(string entity, Secret key, string pool, string name)
    {
        var mon = new MonClient(_c.MonitorAddresses, entity, key) { Deadline = TimeSpan.FromSeconds(20) };
        var info = _map.FindPool(pool)!;
        var placement = new OsdPlacement(_map);
        var hash = OsdPlacement.ObjectHash(name);
        var pg = placement.PgOf(info, hash);
        var primary = placement.Place(info, pg.Seed).Primary;
        var endpoint = IPEndPoint.Parse(_map.FindOsd(primary)!.Address);
        var client = new MessengerClient(endpoint, entity, mon.TicketSource("osd"), ConnectionMode.Crc, new MessengerOptions(), (_, _) => ValueTask.CompletedTask, _ => { });
        await client.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        return (client, new OsdOpRequest(1, 7, _map.Epoch, pg, name, hash, []), mon);
    }

    private static async Task<OsdOpReply> SendAsync(MessengerClient client, byte[] request)
    {
        var reply = await client.Session.RequestAsync(OsdMessageType.OpRequest, request, TimeSpan.FromSeconds(20));
        return OsdOpReply.FromBytes(reply.Payload.Span);
    }

    private async Task<byte[]?> ReadAsAdminAsync(string pool, string name)
    {
        var (client, t, mon) = await ConnectAsync("client.admin", _c.Admin.Key, pool, name);
        await using (mon)
        await using (client)
        {
            var r = await SendAsync(client, (t with { Tid = 99, Ops = [OsdOp.Read(0, 0)] }).ToBytes());
            return r.Result == OsdResult.NotFound ? null : r.Outputs[0].Data.ToArray();
        }
    }

    [Fact]
    public async Task A_read_only_cap_cannot_write_and_nothing_changes()
    {
        var key = await AddClientAsync("client.ro", "allow r");
        var (client, t, mon) = await ConnectAsync("client.ro", key, "data", "guarded");
        await using (mon)
        await using (client)
        {
            var write = await SendAsync(client, (t with { Ops = [OsdOp.WriteFull("x"u8.ToArray())] }).ToBytes());
            Assert.Equal(OsdResult.AccessDenied, write.Result);
            Assert.Contains("client.ro", write.Message, StringComparison.Ordinal);
            var read = await SendAsync(client, (t with { Tid = 2, Ops = [OsdOp.Stat()] }).ToBytes());
            Assert.Equal(OsdResult.NotFound, read.Result);
        }
        Assert.Null(await ReadAsAdminAsync("data", "guarded"));
    }

    [Fact]
    public async Task A_cap_for_another_pool_is_refused_in_this_one()
    {
        var key = await AddClientAsync("client.vm", "allow rw pool=other");
        var (client, t, mon) = await ConnectAsync("client.vm", key, "data", "x");
        await using (mon)
        await using (client)
        {
            Assert.Equal(OsdResult.AccessDenied, (await SendAsync(client, (t with { Ops = [OsdOp.WriteFull("x"u8.ToArray())] }).ToBytes())).Result);
        }
        var (ok, t2, mon2) = await ConnectAsync("client.vm", key, "other", "x");
        await using (mon2)
        await using (ok)
        {
            Assert.Equal(OsdResult.Ok, (await SendAsync(ok, (t2 with { Ops = [OsdOp.WriteFull("y"u8.ToArray())] }).ToBytes())).Result);
        }
        Assert.Null(await ReadAsAdminAsync("data", "x"));
        Assert.Equal("y"u8.ToArray(), await ReadAsAdminAsync("other", "x"));
    }

    [Fact]
    public async Task Sessions_without_a_valid_ticket_are_refused()
    {
        var endpoint = IPEndPoint.Parse(_map.FindOsd(_c.Osds.Keys.First())!.Address);
        // A client's own key is not how one reaches an OSD (the OSD holds no client keys).
        await using (var keyed = new MessengerClient(endpoint, "client.admin", _c.Admin.Key, ConnectionMode.Crc, new MessengerOptions(), (_, _) => ValueTask.CompletedTask, _ => { }))
        {
            await Assert.ThrowsAsync<AuthenticationException>(() => keyed.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        }
        // An expired ticket, sealed under the OSDs' real service key.
        await using var osdMon = new MonClient(_c.MonitorAddresses, "osd.0", Keyring.Load(Osd.Daemon.OsdDaemon.KeyringPath(_c.ConfDir, 0)).Find("osd.0")!.Key);
        var keys = await osdMon.GetServiceKeysAsync("osd");
        var expired = Tickets.Issue(keys, "client.admin", new EntityCaps(new Dictionary<string, string> { ["osd"] = "allow *" }),
            DateTimeOffset.UtcNow - TimeSpan.FromHours(2), TimeSpan.FromMinutes(1));
        await using var stale = new MessengerClient(endpoint, "client.admin", _ => ValueTask.FromResult(expired), ConnectionMode.Crc, new MessengerOptions(),
            (_, _) => ValueTask.CompletedTask, _ => { });
        var refused = await Assert.ThrowsAsync<AuthenticationException>(() => stale.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains("expired", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Hostile_requests_get_clear_errors_and_the_OSD_stays_up()
    {
        var (client, t, mon) = await ConnectAsync("client.admin", _c.Admin.Key, "data", "target");
        await using (mon)
        await using (client)
        {
            var tooLong = new string('n', Limits.MaxObjectNameBytes + 1);
            var cases = new (string What, byte[] Request, int Expected)[]
            {
                ("name too long", (t with { Object = tooLong, ObjectHash = OsdPlacement.ObjectHash(tooLong), Ops = [OsdOp.Stat()] }).ToBytes(), OsdResult.NameTooLong),
                ("empty name", (t with { Object = "", Ops = [OsdOp.Stat()] }).ToBytes(), OsdResult.InvalidArgument),
                ("NUL in name", (t with { Object = "a\0b", ObjectHash = OsdPlacement.ObjectHash("a\0b"), Ops = [OsdOp.Stat()] }).ToBytes(), OsdResult.InvalidArgument),
                ("unknown op code", (t with { Ops = [new OsdOp((OsdOpCode)999)] }).ToBytes(), OsdResult.NotSupported),
                ("write past the largest object", (t with { Ops = [OsdOp.Write((ulong)Limits.MaxObjectSize, "x"u8.ToArray())] }).ToBytes(), OsdResult.TooLarge),
                ("offset near 2^64", (t with { Ops = [OsdOp.Write(ulong.MaxValue - 1, "xy"u8.ToArray())] }).ToBytes(), OsdResult.TooLarge),
                ("no operations", (t with { Ops = [] }).ToBytes(), OsdResult.InvalidArgument),
                ("unknown pool", (t with { Pg = new PgId(999, 0), Ops = [OsdOp.Stat()] }).ToBytes(), OsdResult.NotFound),
                ("garbage bytes", [1, 2, 3, 4, 5], OsdResult.InvalidArgument),
                ("truncated request", (t with { Ops = [OsdOp.Stat()] }).ToBytes()[..20], OsdResult.InvalidArgument),
            };
            ulong tid = 100;
            foreach (var (what, request, expected) in cases)
            {
                var patched = request;
                if (request.Length > 20 && what != "truncated request")
                {
                    var r = OsdOpRequest.FromBytes(request);
                    patched = (r with { Tid = tid++ }).ToBytes();
                }
                var reply = await SendAsync(client, patched);
                Assert.True(reply.Result == expected, $"{what}: {reply.Result} ({reply.Message}), expected {expected}");
                Assert.False(string.IsNullOrWhiteSpace(reply.Message), $"{what}: no message");
            }
            // Still serving.
            var ok = await SendAsync(client, (t with { Tid = tid++, Ops = [OsdOp.WriteFull("fine"u8.ToArray())] }).ToBytes());
            Assert.Equal(OsdResult.Ok, ok.Result);
        }
        Assert.Equal("fine"u8.ToArray(), await ReadAsAdminAsync("data", "target"));
    }
}
