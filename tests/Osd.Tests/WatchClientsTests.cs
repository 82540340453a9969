using System.Threading.Channels;
using Appliance.Client;
using Appliance.Osd.Protocol;
using Appliance.Tests.Support;

namespace Appliance.Osd.Tests;

/// <summary>Watch/notify between client processes: each client instance's watch is its own at the OSD.</summary>
public sealed class WatchClientsTests
{
    [Fact]
    public async Task Two_clients_watching_one_object_are_both_notified()
    {
        await using var c = new LoopbackCluster();
        await c.StartWithPoolsAsync(["data"], pgNum: 4);
        await using var a = await ClusterClient.ConnectAsync(c.MonitorAddresses, "client.admin", c.Admin.Key);
        await using var b = await ClusterClient.ConnectAsync(c.MonitorAddresses, "client.admin", c.Admin.Key);
        await using var n = await ClusterClient.ConnectAsync(c.MonitorAddresses, "client.admin", c.Admin.Key);
        await a.OpenPool("data").WriteFullAsync("watched", "x"u8.ToArray());
        var seenA = Channel.CreateUnbounded<WatchNotifyMessage>();
        var seenB = Channel.CreateUnbounded<WatchNotifyMessage>();
        // Each client's first watch: two processes (mounts of one filesystem) both watching the same object.
        await using var wa = await a.OpenPool("data").WatchAsync("watched", m => seenA.Writer.WriteAsync(m));
        await using var wb = await b.OpenPool("data").WatchAsync("watched", m => seenB.Writer.WriteAsync(m));

        await n.OpenPool("data").NotifyAsync("watched", "changed"u8.ToArray(), TimeSpan.FromSeconds(10));

        Assert.Equal("changed"u8.ToArray(), (await seenA.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10))).Payload.ToArray());
        Assert.Equal("changed"u8.ToArray(), (await seenB.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10))).Payload.ToArray());
        Assert.NotEqual(wa.Cookie, wb.Cookie);
    }
}
