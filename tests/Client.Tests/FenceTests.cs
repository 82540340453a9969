using Appliance.Osd.Protocol;

namespace Appliance.Client.Tests;

/// <summary>Fencing needs every OSD to hold the epoch that blocklists an instance, not only those the fencing client
/// talks to: <see cref="ClusterClient.EnsureOsdsHaveEpochAsync"/>. Fake OSDs on loopback behind real sessions.</summary>
public class FenceTests
{
    [Fact]
    public async Task Every_up_OSD_is_asked_with_the_epoch_and_a_lagging_one_is_asked_until_it_has_it()
    {
        await using var cluster = new TestCluster(3);
        cluster.Publish();
        var map = cluster.Publish(); // epoch 2
        var client = cluster.Client();
        await client.WaitForEpochAsync(map.Epoch);
        // osd.1 lags: it answers "try again" at epoch 1 (as an OSD does when the epoch a request carries does not
        // reach it in time) until the test lets it catch up.
        var lagging = cluster.Osds[1];
        var caughtUp = 0;
        lagging.Answer = r => Volatile.Read(ref caughtUp) == 0
            ? FakeOsd.Reply(r, OsdResult.TryAgain, 1)
            : FakeOsd.Reply(r, OsdResult.NotFound, map.Epoch);

        var ensure = client.EnsureOsdsHaveEpochAsync(map.Epoch);
        foreach (var osd in cluster.Osds)
        {
            var got = await osd.NextAsync();
            Assert.Equal(map.Epoch, got.Request.MapEpoch);
            Assert.Equal([OsdOpCode.Stat], got.Request.Ops.Select(o => o.Code));
        }
        // Asked again while it lags, and not done before it has the epoch.
        await lagging.NextAsync();
        Assert.False(ensure.IsCompleted);
        Volatile.Write(ref caughtUp, 1);
        await ensure.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, cluster.Osds[0].Objects.AppliedWrites + cluster.Osds[2].Objects.AppliedWrites);
    }

    [Fact]
    public async Task An_OSD_that_never_answers_is_waited_for_until_a_map_has_it_down()
    {
        await using var cluster = new TestCluster(3);
        var map = cluster.Publish();
        var client = cluster.Client();
        await client.WaitForEpochAsync(map.Epoch);
        cluster.Osds[2].Answer = _ => null;

        var ensure = client.EnsureOsdsHaveEpochAsync(map.Epoch);
        await cluster.Osds[2].NextAsync();
        Assert.False(ensure.IsCompleted);
        cluster.Publish(down: [2]);
        await ensure.WaitAsync(TimeSpan.FromSeconds(30));
    }
}
