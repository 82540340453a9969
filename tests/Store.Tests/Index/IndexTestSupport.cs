using Appliance.Platform.Devices;
using Appliance.Store.Index;

namespace Appliance.Store.Tests.Index;

/// <summary>memcmp order, as the index compares keys.</summary>
public sealed class ByteOrder : IComparer<byte[]>
{
    public static readonly ByteOrder Instance = new();

    public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
}

/// <summary>Devices, allocators, keys and values for the index tests.</summary>
public static class IndexTestSupport
{
    /// <summary>Pages before this one are left alone, like the store's superblock and journal.</summary>
    public const long FirstPage = 8;

    public const uint Seed = 0x5eed1234;

    public static IndexOptions Options(int cachePages = 16) => new() { CacheBytes = cachePages * 4096L, CrcSeed = Seed };

    public static RegionPageAllocator Allocator(IBlockDevice device) => new(FirstPage, device.Size / 4096 - FirstPage);

    /// <summary>
    /// The key of id <paramref name="id"/>: a collection byte, then (for one id in four) a long run of filler like a
    /// long object name, then the id big-endian and a tail. Long shared prefixes make long separators, so a small
    /// tree is several levels deep.
    /// </summary>
    public static byte[] Key(int id)
    {
        var r = new Random(id * 7919 + 1);
        var filler = r.Next(4) == 0 ? r.Next(200, 900) : r.Next(0, 40);
        var tail = r.Next(0, 12);
        var key = new byte[1 + filler + 4 + tail];
        key[0] = (byte)(id % 4);
        key.AsSpan(1, filler).Fill((byte)'p');
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(key.AsSpan(1 + filler), id);
        r.NextBytes(key.AsSpan(5 + filler));
        return key;
    }

    /// <summary>Mostly small values; some near a page's limit; a few in overflow chains (up to 70 KB).</summary>
    public static byte[] Value(Random rng)
    {
        var n = rng.Next(100) switch
        {
            < 70 => rng.Next(0, 64),
            < 90 => rng.Next(64, 1500),
            < 97 => rng.Next(1500, 4000),
            _ => rng.Next(4000, 70000),
        };
        var v = new byte[n];
        rng.NextBytes(v);
        return v;
    }

    public static async Task<List<(byte[] Key, byte[] Value)>> ScanAllAsync(IndexCursor cursor)
    {
        var list = new List<(byte[], byte[])>();
        while (await cursor.MoveNextAsync())
        {
            list.Add((cursor.Key.ToArray(), cursor.Value.ToArray()));
        }
        return list;
    }

    /// <summary>The tree's content equals the model's, by a full scan.</summary>
    public static async Task AssertContentAsync(SortedDictionary<byte[], byte[]> model, IndexCursor cursor, string context)
    {
        var got = await ScanAllAsync(cursor);
        var i = 0;
        foreach (var (k, v) in model)
        {
            Assert.True(i < got.Count, $"{context}: scan ended after {got.Count} of {model.Count} entries");
            Assert.True(k.AsSpan().SequenceEqual(got[i].Key), $"{context}: entry {i} is {Convert.ToHexString(got[i].Key)}, expected {Convert.ToHexString(k)}");
            Assert.True(v.AsSpan().SequenceEqual(got[i].Value), $"{context}: value of entry {i} differs ({got[i].Value.Length} bytes, expected {v.Length})");
            i++;
        }
        Assert.Equal(model.Count, got.Count);
    }

    /// <summary>Check() is clean and the allocator holds exactly the tree's pages and those waiting for release.</summary>
    public static async Task<IndexCheckReport> AssertSoundAsync(BPlusTree tree, RegionPageAllocator allocator, string context)
    {
        var report = await tree.CheckAsync();
        Assert.True(report.Clean, $"{context}: {string.Join("\n", report.Errors.Take(20))}");
        var expected = new HashSet<long>(report.Pages);
        expected.UnionWith(report.WaitingPages);
        var held = allocator.AllocatedPages().ToHashSet();
        Assert.True(held.SetEquals(expected),
            $"{context}: allocator holds {held.Count} pages, the tree uses {report.Pages.Count} and {report.WaitingPages.Count} wait; "
            + $"leaked {string.Join(",", held.Except(expected).Take(10))}, missing {string.Join(",", expected.Except(held).Take(10))}");
        return report;
    }

    public static SortedDictionary<byte[], byte[]> Copy(SortedDictionary<byte[], byte[]> model) => new(model, ByteOrder.Instance);
}
