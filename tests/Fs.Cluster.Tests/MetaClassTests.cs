using Appliance.Fs.Meta;
using Appliance.Client;
using Appliance.Osd.Protocol;
using Appliance.Store;
using Xunit.Abstractions;

namespace Appliance.Fs.Cluster.Tests;

/// <summary>The fsmeta class on real OSDs: every object of a filesystem in one PG, concurrent renames of one file
/// (exactly one wins), and metadata operations that go on through the loss of an OSD.</summary>
public sealed class MetaClassTests(ClusterFsFixture fixture, ITestOutputHelper output) : IClassFixture<ClusterFsFixture>
{
    private static MetaRequest R(MetaOp op) => new(op, Caller.Root, MetaTime.FromDateTime(DateTime.UtcNow));

    private static MetaReply Ok(MetaReply r)
    {
        Assert.True(r.IsOk, $"errno {r.Errno}");
        return r;
    }

    [Fact]
    public async Task Concurrent_renames_of_one_file_into_different_directories_exactly_one_wins()
    {
        var meta = await fixture.NewFsAsync("renames");
        for (var round = 0; round < 5; round++)
        {
            var dirs = new List<ulong>();
            for (var i = 0; i < 8; i++)
            {
                dirs.Add(Ok(await meta.CallAsync(R(MetaOp.Make) with { Ino = Superblock.RootIno, Name = $"r{round}d{i}", Mode = ModeBits.IfDir | 0x1ED }, default)).Inode!.Ino);
            }
            var file = Ok(await meta.CallAsync(R(MetaOp.Make) with { Ino = Superblock.RootIno, Name = $"f{round}", Mode = ModeBits.IfReg | 0x1A4 }, default)).Inode!.Ino;
            var results = await Task.WhenAll(dirs.Select(d => meta.CallAsync(R(MetaOp.Rename) with { Ino = Superblock.RootIno, Name = $"f{round}", Ino2 = d, Name2 = "moved" }, default)));
            Assert.Equal(1, results.Count(r => r.IsOk));
            Assert.All(results.Where(r => !r.IsOk), r => Assert.Equal(Errno.ENOENT, r.Errno));
            var holders = new List<ulong>();
            foreach (var d in dirs)
            {
                var look = await meta.CallAsync(R(MetaOp.Lookup) with { Ino = d, Name = "moved" }, default);
                if (look.IsOk)
                {
                    Assert.Equal(file, look.Inode!.Ino);
                    holders.Add(d);
                }
            }
            Assert.Single(holders);
            Assert.Equal(1u, Ok(await meta.CallAsync(R(MetaOp.GetAttr) with { Ino = file }, default)).Inode!.Nlink);
        }
    }

    [Fact]
    public async Task Every_metadata_object_of_a_filesystem_lives_in_the_superblocks_PG()
    {
        var meta = await fixture.NewFsAsync("onepg");
        for (var i = 0; i < 20; i++)
        {
            Ok(await meta.CallAsync(R(MetaOp.Make) with { Ino = Superblock.RootIno, Name = $"d{i}", Mode = ModeBits.IfDir | 0x1ED }, default));
        }
        // In every OSD's store, every object of this filesystem (22: superblock, root, 20 directories) is in one PG's
        // collection and carries the locator's hash.
        var found = new HashSet<(string Collection, uint Hash)>();
        var names = new HashSet<string>();
        foreach (var osd in fixture.Cluster.Osds.Values)
        {
            var service = osd.Service!;
            foreach (var pg in service.Pgs)
            {
                ObjectId? after = null;
                while (true)
                {
                    var page = await service.Store.ListAsync(pg.Id.Collection, after, 1000);
                    foreach (var o in page.Objects.Where(o => o.Id.Name.StartsWith(meta.FsName + ".", StringComparison.Ordinal)))
                    {
                        found.Add((pg.Id.Collection, o.Id.Hash));
                        names.Add(o.Id.Name);
                    }
                    if (page.Objects.Count == 0 || page.Next is null)
                    {
                        break;
                    }
                    after = page.Objects[^1].Id;
                }
            }
        }
        output.WriteLine(string.Join(", ", found));
        Assert.Equal(22, names.Count);
        Assert.Single(found);
    }

    /// <summary>The metadata PG's primary killed in the middle of creates, renames and unlinks: every operation
    /// completes without an error (the client resends to the new primary; a resend of an applied change is answered
    /// from the PG log), and the tree is what the operations made.</summary>
    [Fact]
    public async Task Metadata_operations_go_on_when_the_metadata_primary_dies()
    {
        var meta = await fixture.NewFsAsync("failover");
        var map = fixture.Client.OsdMap!;
        var pool = map.Pools.Values.Single(p => p.Name == ClusterFsFixture.MetaPool);
        var placement = new OsdPlacement(map);
        var primary = placement.Place(pool, placement.PgOf(pool, OsdPlacement.ObjectHash(MetaObjects.Locator(meta.FsName))).Seed).Primary;
        output.WriteLine($"metadata primary: osd.{primary}");
        var expected = new SortedSet<string>(StringComparer.Ordinal);
        var a = Ok(await meta.CallAsync(R(MetaOp.Make) with { Ino = Superblock.RootIno, Name = "a", Mode = ModeBits.IfDir | 0x1ED }, default)).Inode!.Ino;
        try
        {
            for (var i = 0; i < 60; i++)
            {
                if (i == 20)
                {
                    await fixture.Cluster.KillOsdAsync(primary);
                    output.WriteLine($"killed osd.{primary} after {i} rounds");
                }
                Ok(await meta.CallAsync(R(MetaOp.Make) with { Ino = a, Name = $"f{i}", Mode = ModeBits.IfReg | 0x1A4 }, default));
                Ok(await meta.CallAsync(R(MetaOp.Rename) with { Ino = a, Name = $"f{i}", Ino2 = Superblock.RootIno, Name2 = $"g{i}" }, default));
                expected.Add($"g{i}");
                if (i % 3 == 0)
                {
                    var gone = Ok(await meta.CallAsync(R(MetaOp.Unlink) with { Ino = Superblock.RootIno, Name = $"g{i}" }, default)).Released;
                    // A resend answered from the log may not carry the released inode; the orphan list has it.
                    foreach (var orphan in gone is null ? Ok(await meta.CallAsync(R(MetaOp.ListOrphans), default)).Orphans : [gone.Ino])
                    {
                        Ok(await meta.CallAsync(R(MetaOp.Purge) with { Ino = orphan }, default));
                    }
                    expected.Remove($"g{i}");
                }
            }
        }
        finally
        {
            if (!fixture.Cluster.Osds.ContainsKey(primary))
            {
                await fixture.Cluster.StartOsdAsync(primary);
                await fixture.Cluster.WaitCleanAsync();
            }
        }
        expected.Add("a");
        var listing = Ok(await meta.CallAsync(R(MetaOp.ReadDir) with { Ino = Superblock.RootIno, Limit = 1000 }, default));
        Assert.Equal(expected, listing.Entries.Select(e => e.Name));
        Assert.Equal(0UL, Ok(await meta.CallAsync(R(MetaOp.GetAttr) with { Ino = a }, default)).Inode!.Children);
    }

    /// <summary>Every OSD gone: a mount's calls end with ETIMEDOUT at their deadline instead of hanging, and work
    /// again once the OSDs are back.</summary>
    [Fact]
    public async Task An_unreachable_cluster_gives_the_application_an_error_not_a_hang()
    {
        var admin = fixture.Cluster.Admin;
        await using var client = await ClusterClient.ConnectAsync(fixture.Cluster.MonitorAddresses, "client.admin", admin.Key,
            new ClusterClientOptions { OpTimeout = TimeSpan.FromSeconds(3) });
        var meta = await fixture.NewFsAsync("deadline");
        var shortMeta = new MetaClient(client.OpenPool(ClusterFsFixture.MetaPool), meta.FsName, TimeSpan.FromSeconds(3));
        await using var m = ClusterMount.Start(fixture.FileSystem(shortMeta, client));
        await File.WriteAllTextAsync(m.P("before"), "x");
        var ids = fixture.Cluster.Osds.Keys.ToList();
        try
        {
            foreach (var id in ids)
            {
                await fixture.Cluster.KillOsdAsync(id);
            }
            var e = await Assert.ThrowsAnyAsync<IOException>(() => Task.Run(() => File.WriteAllText(m.P("during"), "y")));
            output.WriteLine($"while every OSD is down: {e.GetType().Name}: {e.Message}");
            Assert.Contains("timed out", e.Message, StringComparison.OrdinalIgnoreCase);
        }
        finally
        {
            foreach (var id in ids)
            {
                await fixture.Cluster.StartOsdAsync(id);
            }
            await fixture.Cluster.WaitCleanAsync();
        }
        await File.WriteAllTextAsync(m.P("after"), "z");
        Assert.Equal("x", await File.ReadAllTextAsync(m.P("before")));
        Assert.Equal("z", await File.ReadAllTextAsync(m.P("after")));
    }
}
