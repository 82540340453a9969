using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using Appliance.Bench.Common;
using Appliance.Platform.Devices;
using Appliance.Store.Index;
using RocksDbSharp;

namespace Appliance.Bench.Store;

/// <summary>
/// The store's index (copy-on-write B+tree on a FileDevice, O_DIRECT) beside RocksDB in the same run, same keys,
/// same cache budget, both bypassing the page cache: loading keys in random order in durable batches (our commit +
/// flush; RocksDB's WriteBatch with a synced WAL), random point lookups, and 100-entry range scans. Keys look like
/// the store's: a collection byte, a 32-bit hash, an object name, a kind byte.
/// </summary>
public sealed class IndexBenchmark : IBenchmark
{
    public string Name => "index";

    public string Description => "store index vs RocksDB: durable batched puts, gets, 100-entry scans [--dir D] [--keys 200000] [--batch 256] [--cache 64M] [--seconds 5]";

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var dir = a.Get("--dir", "/var/tmp/appliance-bench");
        var count = a.Get("--keys", 200_000);
        var batch = a.Get("--batch", 256);
        var cache = a.GetSize("--cache", 64L << 20);
        var seconds = a.Get("--seconds", 5.0);
        Directory.CreateDirectory(dir);

        var rng = new Random(1);
        var keys = Enumerable.Range(0, count).Select(MakeKey).ToArray();
        rng.Shuffle(keys);
        var value = new byte[100];
        rng.NextBytes(value);

        Console.WriteLine($"index: {count} keys of ~{keys.Average(k => k.Length):0} B, values {value.Length} B, a durable commit per {batch} puts, "
            + $"cache {cache >> 20} MiB each, {seconds} s of gets and of scans; dir {dir}");
        var ours = await OursAsync(Path.Combine(dir, "index.img"), keys, value, batch, cache, seconds, ct);
        var rocks = Rocks(Path.Combine(dir, "index.rocksdb"), keys, value, batch, cache, seconds);
        Console.WriteLine($"{"job",-22} {"appliance",12} {"rocksdb",12} {"ratio",7}");
        for (var i = 0; i < ours.Length; i++)
        {
            Console.WriteLine($"{ours[i].Job,-22} {ours[i].Rate,12:N0} {rocks[i].Rate,12:N0} {(ours[i].Rate / rocks[i].Rate).ToString("0.00", CultureInfo.InvariantCulture),7}");
        }
        return 0;
    }

    private static byte[] MakeKey(int i)
    {
        var name = $"rbd_data.{i % 97:x4}.{i:x16}";
        var key = new byte[1 + 4 + name.Length + 1];
        key[0] = (byte)(i % 8);
        BinaryPrimitives.WriteUInt32BigEndian(key.AsSpan(1), (uint)HashCode.Combine(i) ^ 0x9e3779b9);
        System.Text.Encoding.ASCII.GetBytes(name, key.AsSpan(5));
        key[^1] = (byte)'o';
        return key;
    }

    private static async Task<(string Job, double Rate)[]> OursAsync(string path, byte[][] keys, byte[] value, int batch, long cache, double seconds, CancellationToken ct)
    {
        File.Delete(path);
        var size = Math.Max(256L << 20, (long)keys.Length * 2048);
        await using var device = FileDevice.CreateFile(path, size, new FileDeviceOptions { RequireDirectIo = true });
        var allocator = new RegionPageAllocator(16, size / 4096 - 16);
        await using var tree = BPlusTree.Create(device, allocator, new IndexOptions { CacheBytes = cache, CrcSeed = 42 });
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < keys.Length; i++)
        {
            await tree.PutAsync(keys[i], value, ct);
            if (i % batch == batch - 1 || i == keys.Length - 1)
            {
                var root = await tree.CommitAsync(ct);
                tree.ReleaseFreedPages(root.Generation);
            }
        }
        var puts = keys.Length / clock.Elapsed.TotalSeconds;
        var written = tree.Stats.BytesWritten;

        var rng = new Random(2);
        var sink = new ArrayBufferWriter<byte>(256);
        long gets = 0;
        clock.Restart();
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            sink.ResetWrittenCount();
            if (!await tree.TryGetAsync(keys[rng.Next(keys.Length)], sink, ct))
            {
                throw new InvalidOperationException("a key went missing");
            }
            gets++;
        }
        var getRate = gets / clock.Elapsed.TotalSeconds;

        long scanned = 0;
        clock.Restart();
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            var cursor = tree.Scan(keys[rng.Next(keys.Length)]);
            for (var n = 0; n < 100 && await cursor.MoveNextAsync(ct); n++)
            {
                scanned++;
            }
        }
        var scanRate = scanned / clock.Elapsed.TotalSeconds;
        Console.WriteLine($"  appliance: height {tree.Height}, {allocator.AllocatedCount} pages ({allocator.AllocatedCount * 4096 >> 20} MiB), "
            + $"{written >> 20} MiB written while loading, cache hits {tree.Stats.Hits} misses {tree.Stats.Misses}");
        File.Delete(path);
        return [("puts/s (durable)", puts), ("gets/s", getRate), ("scanned entries/s", scanRate)];
    }

    private static (string Job, double Rate)[] Rocks(string path, byte[][] keys, byte[] value, int batch, long cache, double seconds)
    {
        if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }
        var table = new BlockBasedTableOptions().SetBlockCache(Cache.CreateLru((ulong)cache)).SetCacheIndexAndFilterBlocks(true);
        var options = new DbOptions().SetCreateIfMissing(true).SetUseDirectReads(true).SetUseDirectIoForFlushAndCompaction(true)
            .SetBlockBasedTableFactory(table);
        using var db = RocksDb.Open(options, path);
        var sync = new WriteOptions().SetSync(true);
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < keys.Length; i += batch)
        {
            using var wb = new WriteBatch();
            for (var j = i; j < Math.Min(keys.Length, i + batch); j++)
            {
                wb.Put(keys[j], value);
            }
            db.Write(wb, sync);
        }
        var puts = keys.Length / clock.Elapsed.TotalSeconds;
        // Lookups and scans from the tables, as ours come from pages: flush the memtable first.
        db.Flush(new FlushOptions().SetWaitForFlush(true));

        var rng = new Random(2);
        long gets = 0;
        clock.Restart();
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            if (db.Get(keys[rng.Next(keys.Length)]) is null)
            {
                throw new InvalidOperationException("a key went missing");
            }
            gets++;
        }
        var getRate = gets / clock.Elapsed.TotalSeconds;

        long scanned = 0;
        clock.Restart();
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            using var it = db.NewIterator();
            it.Seek(keys[rng.Next(keys.Length)]);
            for (var n = 0; n < 100 && it.Valid(); n++)
            {
                _ = it.Key();
                _ = it.Value();
                scanned++;
                it.Next();
            }
        }
        var scanRate = scanned / clock.Elapsed.TotalSeconds;
        Directory.Delete(path, recursive: true);
        return [("puts/s (durable)", puts), ("gets/s", getRate), ("scanned entries/s", scanRate)];
    }
}
