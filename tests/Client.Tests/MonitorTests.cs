using System.Net;
using System.Net.Sockets;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Daemon;
using Appliance.Paxos.Core;
using Appliance.Wire.Auth;

namespace Appliance.Client.Tests;

/// <summary>The client on real monitors (one, in this process): ConnectAsync subscribes through MonClient, and the
/// OSD session authenticates with a ticket the monitors issued, verified with the keys the OSD fetched as osd.0.</summary>
public class MonitorTests
{
    private static async Task<MonReply> Ok(Task<MonReply> t)
    {
        var r = await t;
        Assert.True(r.Status == MonReplyStatus.Ok, $"{r.Status}: {r.Message}");
        return r;
    }

    private static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    [Fact]
    public async Task Connect_subscribes_through_the_monitors_and_reaches_an_OSD_with_a_monitor_ticket()
    {
        using var dir = new TempDir();
        var conf = ClusterConf.Bootstrap(dir.File("conf"), [("a", $"127.0.0.1:{FreePort()}")], DateTimeOffset.UtcNow);
        var admin = Keyring.Load(Path.Combine(dir.File("conf"), ClusterConf.AdminKeyringName)).Entries.Single();
        var monitor = new MonitorDaemon(new MonitorDaemonOptions
        {
            Name = "a",
            DataDirectory = dir.File("mon-a"),
            Conf = conf,
            MonKey = Keyring.Load(Path.Combine(dir.File("conf"), ClusterConf.MonKeyringName)).Find(ClusterConf.MonEntity)!.Key,
            Admin = admin,
            Paxos = new PaxosOptions
            {
                HeartbeatInterval = TimeSpan.FromMilliseconds(50),
                LeaseDuration = TimeSpan.FromMilliseconds(400),
                ElectionTimeout = TimeSpan.FromMilliseconds(500),
            },
        }, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
        await monitor.StartAsync();
        try
        {
            var monitors = conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)).ToArray();
            await using var adminClient = new MonClient(monitors, "client.admin", admin.Key);
            var vmKey = Secret.Generate();
            var osdKey = Secret.Generate();
            await Ok(adminClient.CommandAsync(new AuthAdd("client.vm", new Dictionary<string, string> { ["mon"] = "allow r", ["osd"] = "allow rw pool=vm" }, vmKey)));
            await Ok(adminClient.CommandAsync(new AuthAdd("osd.0", new Dictionary<string, string> { ["mon"] = "allow rx" }, osdKey)));
            await using var osdClient = new MonClient(monitors, "osd.0", osdKey);

            // The leader rotates the first osd key in on its own, within a check interval or two (bounded poll).
            ServiceSecrets? keys = null;
            for (var i = 0; i < 200 && keys?.Find(1) is null; i++)
            {
                keys = await osdClient.GetServiceKeysAsync("osd");
                if (keys.Find(1) is null)
                {
                    await Task.Delay(100);
                }
            }
            Assert.NotNull(keys?.Find(1));
            await using var osd = new FakeOsd(0, keys!);
            await Ok(osdClient.CommandAsync(new OsdBoot(0, osd.Address, "h0", 0x10000)));
            await Ok(adminClient.CommandAsync(new PoolCreate("vm", Size: 1, MinSize: 1, PgNum: 8)));

            await using var client = await ClusterClient.ConnectAsync(monitors, "client.vm", vmKey);
            var pool = client.OpenPool("vm");
            Assert.Equal(osd.Address, client.OsdMap!.FindOsd(0)!.Address);
            osd.Epoch = client.OsdMap.Epoch;
            await pool.WriteFullAsync("greeting", "hello"u8.ToArray());

            var got = await osd.NextAsync();
            Assert.Equal("client.vm", got.Session.PeerEntity);
            Assert.True(Authorizer.IsAllowed(got.Session.PeerCaps!, "osd", Access.Write, "vm"));
            Assert.Equal(client.Nonce, got.Request.ClientNonce);
            Assert.Equal("hello"u8.ToArray(), (await pool.ReadAsync("greeting", 0, 100)).ToArray());

            // A later epoch (another pool) reaches the client by the subscription.
            await Ok(adminClient.CommandAsync(new PoolCreate("other", Size: 1, MinSize: 1, PgNum: 8)));
            while (client.OsdMap.FindPool("other") is null)
            {
                await client.WaitForEpochAsync(client.OsdMap.Epoch + 1); // each wait bounded by the connect timeout
            }
            Assert.Equal("other", client.OpenPool("other").PoolName);
        }
        finally
        {
            await monitor.StopAsync(false);
        }
    }
}
