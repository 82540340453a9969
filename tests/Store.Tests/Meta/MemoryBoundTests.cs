using System.Diagnostics;
using System.Globalization;
using Appliance.Platform.Devices;
using Appliance.Store.CrashWriter;
using Xunit.Abstractions;

namespace Appliance.Store.Tests.Meta;

/// <summary>
/// The store's memory does not grow with its objects (issue 23): onodes, extent maps, xattrs and collections live in
/// the index behind a bounded page cache. Checked by counters (cache pages held, index bytes read at mount) and by a
/// writer process under a hard GC heap limit, never by time.
/// </summary>
public sealed class MemoryBoundTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_store_of_many_objects_with_xattrs_runs_under_a_hard_heap_limit_with_a_small_cache()
    {
        // 80,000 objects (1,000,000 in the soak): the in-memory onodes of format 3 (~500 bytes each with two xattrs)
        // would need ~40 MB for 80,000, more than the whole heap allowed here.
        var objects = TestSupport.Soak ? 1_000_000 : 80_000;
        const long cache = 4 << 20;
        using var dir = new TempDir();
        var psi = new ProcessStartInfo("dotnet", [typeof(Workload).Assembly.Location, "fill", dir.File("disk"),
            objects.ToString(CultureInfo.InvariantCulture), cache.ToString(CultureInfo.InvariantCulture)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // 24 MiB of GC heap: the index cache (4 MiB), the delta (4 MiB, twice while a checkpoint commits), the journal
        // read at mount (4 MiB), transactions in flight and the runtime's own.
        psi.Environment["DOTNET_GCHeapHardLimit"] = "0x1800000";
        using var proc = Process.Start(psi)!;
        var stdout = proc.StandardOutput.ReadToEndAsync();
        var stderr = proc.StandardError.ReadToEndAsync();
        await proc.WaitForExitAsync();
        output.WriteLine(await stdout);
        output.WriteLine(await stderr);
        Assert.True(proc.ExitCode == 0, $"exit {proc.ExitCode}: {await stderr}");
        var figures = (await stdout).Split('\n').Single(l => l.StartsWith("OK ", StringComparison.Ordinal))[3..].Split(' ')
            .Select(kv => kv.Split('=')).ToDictionary(kv => kv[0], kv => long.Parse(kv[1], CultureInfo.InvariantCulture));
        Assert.Equal(objects, figures["objects"]);
        Assert.Equal(objects, figures["listed"]);
        Assert.True(figures["peakResidentBytes"] <= cache, $"cache held {figures["peakResidentBytes"]} bytes");
        // Mount read the root, the collection records and the data bitmap: a few pages, whatever the object count.
        Assert.True(figures["mountReadBytes"] <= 16 * 4096, $"mount read {figures["mountReadBytes"]} bytes of the index");
    }

    [Fact]
    public async Task Mount_reads_a_bounded_number_of_index_pages_whatever_the_object_count()
    {
        var read = new List<long>();
        foreach (var objects in new[] { 500, 12_000 })
        {
            var dev = await TestSupport.NewMemoryStoreAsync(64 << 20, TestSupport.Small(journal: 1 << 20, checkpoint: 1 << 20));
            var options = new StoreOptions { IndexCacheBytes = 64 * 4096 };
            int height;
            await using (var store = await ObjectStore.MountAsync(dev, options))
            {
                var t = new Transaction().CreateCollection("a").CreateCollection("b");
                for (var i = 0; i < objects; i++)
                {
                    var c = i % 2 == 0 ? "a" : "b";
                    t.SetXattr(c, new ObjectId((uint)i * 2654435761u, $"object.{i}"), "_", new byte[30]);
                    if (t.Count >= 500)
                    {
                        await store.SubmitAsync(t);
                        t = new Transaction();
                    }
                }
                await store.SubmitAsync(t.Write("a", "data", 0, new byte[3 * 4096]));
                height = store.IndexHeightForTests;
                // Nothing per object in memory: the collection table, counters, and the delta is empty after a checkpoint.
                await store.CheckpointAsync();
                Assert.Equal(2, store.MetaForTests.Collections.Count);
                Assert.True(store.MetaForTests.Delta.IsEmpty);
            }
            await using (var store = await ObjectStore.MountAsync(dev, options))
            {
                read.Add(store.IndexStats.BytesRead);
                Assert.Equal(objects + 1, store.StatFs().Objects);
                Assert.Equal(new byte[30], await store.GetXattrAsync("b", new ObjectId(1u * 2654435761u, "object.1"), "_"));
                Assert.True((await store.FsckAsync()).IsClean);
            }
            output.WriteLine($"{objects} objects: index height {height}, mount read {read[^1]} bytes of the index");
        }
        // The bigger tree is deeper (a page more per lookup), nothing more.
        Assert.True(read[1] <= read[0] + 4 * 4096, $"mount read {read[0]} then {read[1]} bytes");
        Assert.True(read[1] <= 16 * 4096, $"mount read {read[1]} bytes");
    }

    [Fact]
    public async Task A_store_of_format_3_is_refused_with_the_reason()
    {
        var dev = await TestSupport.NewMemoryStoreAsync();
        // Rewrite both superblock copies as format 3 (onodes in the checkpoint), crcs right.
        var sb = await ReadSuperblockAsync(dev);
        var block = new byte[4096];
        sb.Encode(block);
        var body = BodyLength(block);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(8), 3);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(body), Platform.Checksums.Crc32C.Compute(block.AsSpan(0, body)));
        using var buf = new AlignedBuffer(4096, 4096);
        block.CopyTo(buf.GetSpan());
        await dev.WriteAsync(0, buf.Memory);
        await dev.WriteAsync(4096, buf.Memory);
        var e = await Assert.ThrowsAsync<NotAStoreException>(() => ObjectStore.MountAsync(dev));
        Assert.Contains("format version 3, this program reads version 4", e.Message, StringComparison.Ordinal);
    }

    private static async Task<Format.Superblock> ReadSuperblockAsync(IBlockDevice dev)
    {
        await using var store = await ObjectStore.MountAsync(dev);
        return store.Superblock;
    }

    /// <summary>Where the superblock's crc sits (the body is checksummed up to it).</summary>
    private static int BodyLength(byte[] block)
    {
        for (var n = 64; n < 4096 - 4; n++)
        {
            if (Platform.Checksums.Crc32C.Compute(block.AsSpan(0, n)) == System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(block.AsSpan(n)))
            {
                return n;
            }
        }
        throw new InvalidOperationException("no superblock crc found");
    }
}
