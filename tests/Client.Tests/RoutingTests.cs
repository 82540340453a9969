using Appliance.Osd.Protocol;

namespace Appliance.Client.Tests;

/// <summary>Where requests go and how they are resent: to the primary under the newest map, the same tid on every
/// resend, a deadline naming the PG and OSD. Fake OSDs on loopback behind real messenger sessions with tickets.</summary>
public class RoutingTests
{
    private static readonly byte[] Payload = "hello"u8.ToArray();

    [Fact]
    public async Task A_request_goes_to_the_primary_only_with_the_client_nonce_and_map_epoch()
    {
        await using var cluster = new TestCluster(3);
        var map = cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);

        var placement = TestCluster.PlaceObject(map, "alpha");
        await pool.WriteFullAsync("alpha", Payload);

        var got = await cluster.Osds[placement.Primary].NextAsync();
        Assert.Equal("alpha", got.Request.Object);
        Assert.Equal(placement.Pg, got.Request.Pg);
        Assert.Equal(OsdPlacement.ObjectHash("alpha"), got.Request.ObjectHash);
        Assert.Equal(client.Nonce, got.Request.ClientNonce);
        Assert.Equal(map.Epoch, got.Request.MapEpoch);
        Assert.False(got.Request.Resend);
        foreach (var other in cluster.Osds.Where(o => o.Id != placement.Primary))
        {
            Assert.False(other.Requests.Reader.TryRead(out _), $"osd.{other.Id} is not the primary and got a request");
        }
    }

    [Fact]
    public async Task Try_again_with_a_newer_epoch_waits_for_that_map_and_resends_the_same_tid()
    {
        await using var cluster = new TestCluster(3);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(1);
        var osd = cluster.Osds[1];
        var tries = 0;
        osd.Answer = r => Interlocked.Increment(ref tries) == 1 ? FakeOsd.Reply(r, OsdResult.TryAgain, 2) : osd.Objects.Apply(r, 2);

        var write = pool.WriteFullAsync(name, Payload);
        var first = await osd.NextAsync();
        Assert.False(write.IsCompleted);
        cluster.Publish(); // epoch 2, same placement
        await write;

        var second = await osd.NextAsync();
        Assert.Equal(first.Request.Tid, second.Request.Tid);
        Assert.True(second.Request.Resend);
        Assert.Equal(1u, first.Request.MapEpoch);
        Assert.Equal(2u, second.Request.MapEpoch);
        Assert.Equal(1, osd.Objects.AppliedWrites);
    }

    [Fact]
    public async Task Try_again_under_the_current_map_resends_the_same_tid_after_a_pause()
    {
        await using var cluster = new TestCluster(2);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(0);
        var osd = cluster.Osds[0];
        var tries = 0;
        // The PG is peering for the first three tries.
        osd.Answer = r => Interlocked.Increment(ref tries) <= 3 ? FakeOsd.Reply(r, OsdResult.TryAgain, 1) : osd.Objects.Apply(r, 1);

        await pool.AppendAsync(name, Payload);

        var tids = new List<ulong>();
        while (osd.Requests.Reader.TryRead(out var r))
        {
            tids.Add(r.Request.Tid);
        }
        Assert.Equal(4, tids.Count);
        Assert.Single(tids.Distinct());
        Assert.Equal(Payload, (await pool.ReadAsync(name, 0, 100)).ToArray());
    }

    [Fact]
    public async Task A_request_whose_primary_goes_down_in_a_new_map_goes_to_the_new_primary_with_the_same_tid()
    {
        await using var cluster = new TestCluster(3);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(0);
        var before = TestCluster.PlaceObject(cluster.Current!, name);
        var dead = cluster.Osds[0];
        dead.Answer = _ => null; // hung: never answers

        var write = pool.WriteFullAsync(name, Payload);
        var first = await dead.NextAsync();
        var map = cluster.Publish(down: [0]);
        var after = TestCluster.PlaceObject(map, name);
        Assert.Equal(before.Acting[1], after.Primary);
        await write;

        var moved = await cluster.Osds[after.Primary].NextAsync();
        Assert.Equal(first.Request.Tid, moved.Request.Tid);
        Assert.True(moved.Request.Resend);
        Assert.Equal(map.Epoch, moved.Request.MapEpoch);
    }

    [Fact]
    public async Task A_request_that_gets_no_answer_fails_at_its_deadline_naming_the_PG_and_the_OSD()
    {
        await using var cluster = new TestCluster(2);
        cluster.Publish();
        var client = cluster.Client(new ClusterClientOptions { OpTimeout = TimeSpan.FromMilliseconds(300) });
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(1);
        var pg = TestCluster.PlaceObject(cluster.Current!, name).Pg;
        cluster.Osds[1].Answer = _ => null;

        var e = await Assert.ThrowsAsync<OsdRequestTimeoutException>(() => pool.WriteFullAsync(name, Payload));
        Assert.Equal(pg, e.Pg);
        Assert.Equal(1, e.Osd);
        Assert.Equal(OsdResult.TimedOut, e.Result);
        Assert.Contains($"PG {pg}", e.Message, StringComparison.Ordinal);
        Assert.Contains("osd.1", e.Message, StringComparison.Ordinal);
        Assert.Matches(@"PG \d+\.[0-9a-f]+", e.Message);
    }

    [Fact]
    public async Task A_request_whose_PG_has_no_OSD_up_fails_at_its_deadline_saying_so()
    {
        await using var cluster = new TestCluster(2);
        cluster.Publish(down: [0, 1]);
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);

        var e = await Assert.ThrowsAsync<OsdRequestTimeoutException>(() => pool.ExecuteAsync("x", [OsdOp.Stat()], TimeSpan.FromMilliseconds(200)));
        Assert.Equal(-1, e.Osd);
        Assert.Equal(TestCluster.PlaceObject(cluster.Current!, "x").Pg, e.Pg);
        Assert.Contains("none is in osdmap epoch 1", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_request_waiting_for_an_OSD_to_come_up_goes_when_a_map_brings_one()
    {
        await using var cluster = new TestCluster(2);
        cluster.Publish(down: [0, 1]);
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);

        var write = pool.WriteFullAsync("x", Payload);
        var map = cluster.Publish();
        await write;
        var got = await cluster.Osds[TestCluster.PlaceObject(map, "x").Primary].NextAsync();
        Assert.Equal(map.Epoch, got.Request.MapEpoch);
    }

    [Fact]
    public async Task An_OSD_that_moved_to_a_new_address_gets_a_new_session_there()
    {
        await using var cluster = new TestCluster(2);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(0);
        await pool.WriteFullAsync(name, Payload);
        var old = cluster.Osds[0];
        Assert.Equal(name, (await old.NextAsync()).Request.Object);

        var moved = cluster.Restart(0);
        Assert.NotEqual(old.Address, moved.Address);
        cluster.Publish();
        await client.WaitForEpochAsync(2);
        await pool.WriteFullAsync(name, Payload);

        Assert.Equal(name, (await moved.NextAsync()).Request.Object);
        Assert.False(old.Requests.Reader.TryRead(out _));
    }

    [Fact]
    public async Task A_request_whose_PG_moves_away_from_a_primary_that_stays_up_is_resent_to_the_new_primary()
    {
        await using var cluster = new TestCluster(3);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(0);
        var old = cluster.Osds[0];
        old.Answer = _ => null; // hung, but up: its session stays open

        var write = pool.WriteFullAsync(name, Payload);
        var first = await old.NextAsync();
        var map = cluster.Publish(change: info => info.Id == 0 ? info with { In = false } : info); // out: CRUSH maps the PG elsewhere
        var after = TestCluster.PlaceObject(map, name);
        Assert.NotEqual(0, after.Primary);
        await write;

        var moved = await cluster.Osds[after.Primary].NextAsync();
        Assert.Equal(first.Request.Tid, moved.Request.Tid);
        Assert.True(moved.Request.Resend);
    }

    [Fact]
    public async Task A_request_to_an_OSD_that_is_gone_but_not_yet_marked_down_fails_at_its_deadline_saying_it_is_unreachable()
    {
        await using var cluster = new TestCluster(2);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(1);
        await cluster.Osds[1].DisposeAsync(); // nothing listens at its address any more

        var e = await Assert.ThrowsAsync<OsdRequestTimeoutException>(() => pool.ExecuteAsync(name, [OsdOp.Stat()], TimeSpan.FromSeconds(2)));

        Assert.Equal(1, e.Osd);
        Assert.Contains("osd.1", e.Message, StringComparison.Ordinal);
        Assert.Contains("unreachable", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_OSD_that_refuses_the_ticket_is_named_in_the_timeout()
    {
        await using var cluster = new TestCluster(1);
        cluster.Publish(size: 1);
        var foreign = new Wire.Auth.ServiceSecrets("osd");
        foreign.Rotate(DateTimeOffset.UtcNow, TimeSpan.FromHours(1));
        await using var client = new ClusterClient(cluster.Maps, _ => ValueTask.FromResult(Wire.Auth.Tickets.Issue(foreign, "client.test",
            Wire.Auth.EntityCaps.None, DateTimeOffset.UtcNow, TimeSpan.FromHours(1))), "client.test");
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);

        // (A deadline long enough for a cold process to get the first refusal back.)
        var e = await Assert.ThrowsAsync<OsdRequestTimeoutException>(() => pool.ExecuteAsync("x", [OsdOp.Stat()], TimeSpan.FromSeconds(2)));

        Assert.Equal(0, e.Osd);
        Assert.True(e.Message.Contains("refused our ticket", StringComparison.Ordinal), e.Message);
        Assert.False(cluster.Osds[0].Requests.Reader.TryRead(out _));
    }

    [Fact]
    public async Task A_request_past_the_bound_on_requests_in_flight_waits_its_turn_within_its_deadline()
    {
        await using var cluster = new TestCluster(1);
        cluster.Publish(size: 1);
        var client = cluster.Client(new ClusterClientOptions { MaxInFlightOps = 1 });
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var osd = cluster.Osds[0];
        osd.Answer = r => r.Object == "first" ? null : osd.Objects.Apply(r, 1);

        var first = pool.WriteFullAsync("first", Payload);
        var held = await osd.NextAsync();
        var e = await Assert.ThrowsAsync<OsdRequestTimeoutException>(() => pool.ExecuteAsync("second", [OsdOp.WriteFull(Payload)], TimeSpan.FromMilliseconds(200)));
        Assert.Contains("bound on requests", e.Message, StringComparison.Ordinal);
        Assert.Equal(TestCluster.PlaceObject(cluster.Current!, "second").Pg, e.Pg);
        Assert.False(osd.Requests.Reader.TryRead(out _));

        // Once the first is answered, the next goes.
        await held.Session.SendAsync(OsdMessageType.OpReply, FakeOsd.Reply(held.Request, OsdResult.Ok, 1).ToBytes(), held.Seq);
        await first;
        await pool.WriteFullAsync("third", Payload);
    }
}
