using Appliance.Osd.Protocol;

namespace Appliance.Client.Tests;

/// <summary>Every refusal an OSD sends becomes its typed exception, naming the object, PG and OSD.</summary>
public class ErrorTests
{
    [Theory]
    [InlineData(OsdResult.NotFound, typeof(ObjectNotFoundException))]
    [InlineData(OsdResult.Exists, typeof(ObjectExistsException))]
    [InlineData(OsdResult.AccessDenied, typeof(PermissionDeniedException))]
    [InlineData(OsdResult.NotPermitted, typeof(PermissionDeniedException))]
    [InlineData(OsdResult.QuotaExceeded, typeof(QuotaExceededException))]
    [InlineData(OsdResult.NoSpace, typeof(ClusterFullException))]
    [InlineData(OsdResult.Blocklisted, typeof(BlocklistedException))]
    [InlineData(OsdResult.Canceled, typeof(GuardFailedException))]
    [InlineData(OsdResult.InvalidArgument, typeof(InvalidRequestException))]
    [InlineData(OsdResult.NameTooLong, typeof(InvalidRequestException))]
    [InlineData(OsdResult.IoError, typeof(ObjectIoException))]
    [InlineData(-99, typeof(OsdOperationException))]
    public async Task A_refusal_is_its_typed_exception_with_the_object_PG_and_OSD(int result, Type expected)
    {
        await using var cluster = new TestCluster(2);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(1);
        cluster.Osds[1].Answer = r => FakeOsd.Reply(r, result, 1) with { Message = "because the test said so" };

        var e = await Assert.ThrowsAnyAsync<OsdOperationException>(() => pool.WriteFullAsync(name, "x"u8.ToArray()));

        Assert.Equal(expected, e.GetType());
        Assert.Equal(result, e.Result);
        Assert.Equal(name, e.ObjectName);
        Assert.Equal(TestCluster.PlaceObject(cluster.Current!, name).Pg, e.Pg);
        Assert.Equal(1, e.Osd);
        Assert.NotNull(e.Reply);
        Assert.Contains("because the test said so", e.Message, StringComparison.Ordinal);
        Assert.Contains($"PG {e.Pg} on osd.1", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_pool_and_a_bad_object_name_are_refused_before_anything_is_sent()
    {
        await using var cluster = new TestCluster(1);
        cluster.Publish(size: 1);
        var client = cluster.Client();
        await client.WaitForMapAsync();

        Assert.Throws<PoolNotFoundException>(() => client.OpenPool("nope"));
        var pool = client.OpenPool(TestCluster.PoolName);
        await Assert.ThrowsAsync<ArgumentException>(() => pool.StatAsync(""));
        await Assert.ThrowsAsync<ArgumentException>(() => pool.StatAsync(new string('n', Limits.MaxObjectNameBytes + 1)));
        Assert.False(cluster.Osds[0].Requests.Reader.TryRead(out _));
    }

    [Fact]
    public async Task A_request_on_a_pool_removed_from_the_map_fails_with_pool_not_found()
    {
        await using var cluster = new TestCluster(2);
        cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);
        var name = cluster.ObjectOn(0);
        cluster.Osds[0].Answer = _ => null;

        var write = pool.WriteFullAsync(name, "x"u8.ToArray());
        await cluster.Osds[0].NextAsync();
        var next = cluster.Current!;
        cluster.Maps.Publish(new Maps.OsdMap(next.Epoch + 1, next.Fsid, 0, next.Osds, System.Collections.Immutable.ImmutableSortedDictionary<int, Maps.PoolInfo>.Empty,
            next.PoolMax, next.FailureDomain, next.CrushText, next.Crush));

        var e = await Assert.ThrowsAsync<PoolNotFoundException>(() => write);
        Assert.Equal(TestCluster.PoolName, e.Pool);
    }
}
