using System.Threading.Channels;
using Appliance.Osd.Protocol;

namespace Appliance.Client.Tests;

/// <summary>Watch/notify: notifies reach the callback and are acknowledged; watches follow their object's primary.</summary>
public class WatchTests
{
    [Fact]
    public async Task A_notify_reaches_the_callback_and_is_acknowledged_after_it()
    {
        await using var cluster = new TestCluster(2);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(0);
        var osd = cluster.Osds[0];
        var notified = Channel.CreateUnbounded<WatchNotifyMessage>();

        var watch = await pool.WatchAsync(name, n => notified.Writer.WriteAsync(n));
        var registered = await osd.NextAsync();
        Assert.Equal(OsdOpCode.Watch, registered.Request.Ops[0].Code);
        Assert.Equal(watch.Cookie, registered.Request.Ops[0].Offset);

        await registered.Session.SendAsync(OsdMessageType.WatchNotify,
            new WatchNotifyMessage(77, watch.Cookie, TestCluster.PoolId, name, "changed"u8.ToArray()).ToBytes());
        var n = await notified.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(77ul, n.NotifyId);
        Assert.Equal("changed"u8.ToArray(), n.Payload.ToArray());
        var ack = await osd.Acks.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new WatchNotifyAck(77, watch.Cookie), ack);

        await watch.DisposeAsync();
        var unwatch = await osd.NextAsync();
        Assert.Equal(OsdOpCode.Unwatch, unwatch.Request.Ops[0].Code);
        Assert.Equal(watch.Cookie, unwatch.Request.Ops[0].Offset);
    }

    [Fact]
    public async Task A_notify_for_a_cookie_nobody_watches_is_acknowledged_anyway()
    {
        await using var cluster = new TestCluster(1);
        cluster.Publish(size: 1);
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        await using var watch = await pool.WatchAsync("w", _ => ValueTask.CompletedTask);
        var registered = await cluster.Osds[0].NextAsync();

        await registered.Session.SendAsync(OsdMessageType.WatchNotify, new WatchNotifyMessage(5, 999, TestCluster.PoolId, "w", default).ToBytes());

        Assert.Equal(new WatchNotifyAck(5, 999), await cluster.Osds[0].Acks.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task A_watch_is_registered_again_with_the_new_primary_after_a_map_change()
    {
        await using var cluster = new TestCluster(3);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(0);
        await using var watch = await pool.WatchAsync(name, _ => ValueTask.CompletedTask);
        Assert.Equal(OsdOpCode.Watch, (await cluster.Osds[0].NextAsync()).Request.Ops[0].Code);

        var map = cluster.Publish(down: [0]);
        var primary = TestCluster.PlaceObject(map, name).Primary;
        var again = await cluster.Osds[primary].NextAsync();

        Assert.Equal(OsdOpCode.Watch, again.Request.Ops[0].Code);
        Assert.Equal(watch.Cookie, again.Request.Ops[0].Offset);
        Assert.Equal(map.Epoch, again.Request.MapEpoch);
    }

    [Fact]
    public async Task A_watch_is_registered_again_after_its_session_reconnects()
    {
        await using var cluster = new TestCluster(1);
        cluster.Publish(size: 1);
        var client = cluster.Client(new ClusterClientOptions { WatchCheckInterval = TimeSpan.FromMilliseconds(20) });
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        await using var watch = await pool.WatchAsync("w", _ => ValueTask.CompletedTask);
        var first = await cluster.Osds[0].NextAsync();

        cluster.Osds[0].DropConnections();
        var again = await cluster.Osds[0].NextAsync();

        Assert.Equal(OsdOpCode.Watch, again.Request.Ops[0].Code);
        Assert.Equal(watch.Cookie, again.Request.Ops[0].Offset);
        Assert.NotEqual(first.Request.Tid, again.Request.Tid);
    }

    [Fact]
    public async Task A_watch_that_cannot_be_registered_again_reports_it_to_its_error_callback()
    {
        await using var cluster = new TestCluster(3);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(0);
        var errors = Channel.CreateUnbounded<Exception>();
        await using var watch = await pool.WatchAsync(name, _ => ValueTask.CompletedTask, e => errors.Writer.TryWrite(e));
        await cluster.Osds[0].NextAsync();
        foreach (var osd in cluster.Osds)
        {
            osd.Answer = r => FakeOsd.Reply(r, OsdResult.NotFound, osd.Epoch); // the object is gone
        }

        cluster.Publish(down: [0]);

        var error = await errors.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        var notFound = Assert.IsType<ObjectNotFoundException>(error);
        Assert.Equal(name, notFound.ObjectName);
    }

    [Fact]
    public async Task A_notify_whose_callback_throws_is_acknowledged_all_the_same()
    {
        await using var cluster = new TestCluster(1);
        cluster.Publish(size: 1);
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        await using var watch = await pool.WatchAsync("w", _ => throw new InvalidOperationException("the application's bug"));
        var registered = await cluster.Osds[0].NextAsync();

        await registered.Session.SendAsync(OsdMessageType.WatchNotify, new WatchNotifyMessage(9, watch.Cookie, TestCluster.PoolId, "w", default).ToBytes());

        Assert.Equal(new WatchNotifyAck(9, watch.Cookie), await cluster.Osds[0].Acks.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
    }
}
