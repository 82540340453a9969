using System.Text;
using Appliance.Osd.Protocol;

namespace Appliance.Client.Tests;

/// <summary>The pool handle's conveniences, against a fake OSD that serves objects from memory: each builds the
/// sub-operation the protocol defines and reads its output back.</summary>
public class PoolTests
{
    private static async Task<(TestCluster Cluster, IoContext Pool)> OneOsdAsync()
    {
        var cluster = new TestCluster(1);
        cluster.Publish(size: 1);
        var client = cluster.Client();
        await client.WaitForMapAsync();
        return (cluster, client.OpenPool(TestCluster.PoolName));
    }

    [Fact]
    public async Task Data_operations_read_back()
    {
        var (cluster, pool) = await OneOsdAsync();
        await using var _ = cluster;

        await pool.CreateAsync("o");
        await Assert.ThrowsAsync<ObjectExistsException>(() => pool.CreateAsync("o"));
        await pool.WriteAsync("o", 4, "abcd"u8.ToArray());
        await pool.AppendAsync("o", "ef"u8.ToArray());
        Assert.Equal("\0\0\0\0abcdef"u8.ToArray(), (await pool.ReadAsync("o", 0, 100)).ToArray());
        await pool.ZeroAsync("o", 4, 2);
        await pool.TruncateAsync("o", 8);
        Assert.Equal("\0\0\0\0\0\0cd"u8.ToArray(), (await pool.ReadAsync("o", 0, 100)).ToArray());
        var stat = await pool.StatAsync("o");
        Assert.Equal(8ul, stat.Size);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000), stat.Modified);
        Assert.True(stat.Version > 0);
        await pool.WriteFullAsync("o", "new"u8.ToArray());
        Assert.Equal("new"u8.ToArray(), (await pool.ReadAsync("o", 0, 100)).ToArray());
        await pool.RemoveAsync("o");
        await Assert.ThrowsAsync<ObjectNotFoundException>(() => pool.StatAsync("o"));
    }

    [Fact]
    public async Task Xattrs_and_a_failed_guard()
    {
        var (cluster, pool) = await OneOsdAsync();
        await using var _ = cluster;

        await pool.SetXattrAsync("o", "a", "1"u8.ToArray());
        await pool.SetXattrAsync("o", "b", "2"u8.ToArray());
        Assert.Equal("1"u8.ToArray(), (await pool.GetXattrAsync("o", "a")).ToArray());
        await pool.RemoveXattrAsync("o", "a");
        var all = await pool.GetXattrsAsync("o");
        Assert.Equal(["b"], all.Keys);
        await Assert.ThrowsAsync<ObjectNotFoundException>(() => pool.GetXattrAsync("o", "a"));

        var e = await Assert.ThrowsAsync<GuardFailedException>(() => pool.ExecuteAsync("o",
            [OsdOp.CmpXattr("b", CmpXattrMode.Equal, "other"u8.ToArray()), OsdOp.WriteFull("never"u8.ToArray())]));
        Assert.Equal(OsdResult.Canceled, e.Result);
        Assert.Equal(0, (await pool.ReadAsync("o", 0, 10)).Length);
    }

    [Fact]
    public async Task Omap_pages_with_a_prefix_list_every_key_once_in_order()
    {
        var (cluster, pool) = await OneOsdAsync();
        await using var _ = cluster;
        var entries = Enumerable.Range(0, 25).Select(i => KeyValuePair.Create($"k{i:D2}", Encoding.UTF8.GetBytes($"v{i}"))).ToList();
        await pool.SetOmapAsync("o", entries);
        await pool.SetOmapAsync("o", [KeyValuePair.Create("other", "x"u8.ToArray())]);

        var listed = new List<string>();
        await foreach (var (k, v) in pool.ListOmapAsync("o", prefix: "k", pageSize: 4))
        {
            listed.Add(k);
            Assert.Equal($"v{int.Parse(k[1..], System.Globalization.CultureInfo.InvariantCulture)}", Encoding.UTF8.GetString(v));
        }
        Assert.Equal(entries.Select(e => e.Key), listed);
        var page = await pool.GetOmapAsync("o", startAfter: "k20", prefix: "k", max: 2);
        Assert.Equal(["k21", "k22"], page.Entries.Select(e => e.Key));
        Assert.True(page.More);

        await pool.RemoveOmapKeysAsync("o", ["k00", "k01"]);
        var values = await pool.GetOmapValuesAsync("o", ["k00", "k02", "other"]);
        Assert.Equal(["k02", "other"], values.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task A_method_call_returns_the_method_output()
    {
        var (cluster, pool) = await OneOsdAsync();
        await using var _ = cluster;
        await pool.CreateAsync("o");

        var output = await pool.CallAsync("o", "lock", "acquire", "me"u8.ToArray());

        Assert.Equal("lock.acquire:me", Encoding.UTF8.GetString(output.Span));
        var sent = (Drain(cluster.Osds[0])).Last().Request;
        Assert.True(sent.IsWrite);
    }

    [Fact]
    public async Task Listing_a_pool_visits_every_PG_page_by_page_and_names_each_object_once()
    {
        await using var cluster = new TestCluster(3);
        var shared = new FakeObjects();
        var names = Enumerable.Range(0, 60).Select(i => $"object-{i}").ToList();
        foreach (var osd in cluster.Osds)
        {
            osd.Objects = shared;
        }
        foreach (var n in names)
        {
            shared.Put(n);
        }
        var map = cluster.Publish();
        var client = cluster.Client();
        await client.WaitForMapAsync();
        var pool = client.OpenPool(TestCluster.PoolName);

        var listed = new List<string>();
        await foreach (var n in pool.ListObjectsAsync(pageSize: 3))
        {
            listed.Add(n);
        }

        Assert.Equal(names.Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));
        // Every PG was asked, each by its primary, on an empty object name.
        var asked = new List<Received>();
        foreach (var osd in cluster.Osds)
        {
            foreach (var r in Drain(osd))
            {
                Assert.Equal(osd.Id, new OsdPlacement(map).Place(map.Pools[TestCluster.PoolId], r.Request.Pg.Seed).Primary);
                Assert.Equal("", r.Request.Object);
                Assert.Equal(OsdOpCode.PgList, r.Request.Ops[0].Code);
                asked.Add(r);
            }
        }
        Assert.Equal(Enumerable.Range(0, TestCluster.PgNum).Select(i => (uint)i), asked.Select(r => r.Request.Pg.Seed).Distinct().Order());
        Assert.True(asked.Count > TestCluster.PgNum, "some PG took more than one page");
    }

    private static List<Received> Drain(FakeOsd osd)
    {
        var all = new List<Received>();
        while (osd.Requests.Reader.TryRead(out var r))
        {
            all.Add(r);
        }
        return all;
    }
}
