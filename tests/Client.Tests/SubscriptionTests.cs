namespace Appliance.Client.Tests;

/// <summary>The client's osdmap: the newest one wins, and a subscription that drops is resumed from it.</summary>
public class SubscriptionTests
{
    [Fact]
    public async Task A_dropped_subscription_resumes_from_the_newest_map_held()
    {
        await using var cluster = new TestCluster(2);
        cluster.Publish();
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForEpochAsync(2);

        cluster.Maps.Drop();
        cluster.Publish();
        await client.WaitForEpochAsync(3);

        Assert.Equal([0u, 2u], cluster.Maps.Subscriptions.Take(2).ToArray());
        Assert.Equal(3u, client.OsdMap!.Epoch);
    }

    [Fact]
    public async Task Waiting_for_a_map_that_never_comes_fails_with_a_clear_error()
    {
        await using var cluster = new TestCluster(1);
        var client = cluster.Client(new ClusterClientOptions { ConnectTimeout = TimeSpan.FromMilliseconds(100) });

        var e = await Assert.ThrowsAsync<ClusterUnavailableException>(() => client.WaitForMapAsync());
        Assert.Contains("holding none", e.Message, StringComparison.Ordinal);
        Assert.Throws<ClusterUnavailableException>(() => client.OpenPool(TestCluster.PoolName));
    }

    [Fact]
    public async Task An_older_map_offered_late_is_ignored()
    {
        await using var cluster = new TestCluster(1);
        var first = cluster.Publish(size: 1);
        cluster.Publish(size: 1);
        var client = cluster.Client();
        await client.WaitForEpochAsync(2);

        client.ApplyMap(first);

        Assert.Equal(2u, client.OsdMap!.Epoch);
    }
}
