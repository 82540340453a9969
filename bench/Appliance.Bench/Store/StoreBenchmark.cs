using System.Diagnostics;
using System.Globalization;
using Appliance.Bench.Common;
using Appliance.Platform.Devices;
using Appliance.Store;

namespace Appliance.Bench.Store;

/// <summary>
/// The object store beside fio, like for like: two files of the same size in the same directory, both pre-filled
/// (so neither side pays for the host filesystem's block allocation), both opened with O_DIRECT. Jobs: durable
/// 4 KiB random overwrites of existing objects at QD1 and QD32 (fio: fdatasync per write at QD1, per 32 writes at
/// QD32), 4 MiB object writes, each durable before the next (fio: 4 MiB sequential writes, fdatasync per write),
/// and 4 KiB random reads at QD32. Each of our jobs is followed at once by fio's (the machine's load changes over
/// a minute; a ratio compares two runs seconds apart). Also prints the store's memory use. With --objects N the
/// store is first filled with N small objects (4 KiB of data and two xattrs each; --omap-keys M spread over them),
/// and it prints the fill rate, what a checkpoint writes after 1,000 object changes, the mount time and index bytes
/// read at a remount, and the process's peak RSS (`RSS: 123 MiB`).
/// </summary>
public sealed class StoreBenchmark : IBenchmark
{
    public string Name => "store";

    public string Description =>
        "object store vs fio: 4K durable overwrites QD1/QD32, 4M object writes, 4K random reads [--dir D] [--size 1G] [--seconds 3] [--rounds 1] [--jobs qd1,qd32,4m,read] [--fio no] [--objects N] [--omap-keys M] [--cache 64M]";

    private const string Coll = "bench";
    private static readonly string[] AllJobs = ["qd1", "qd32", "4m", "read"];

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var dir = a.Get("--dir", "/var/tmp/appliance-bench");
        var size = a.GetSize("--size", 1L << 30);
        var seconds = a.Get("--seconds", 3.0);
        var rounds = Math.Max(1, a.Get("--rounds", 1));
        var jobs = a.Get("--jobs", string.Join(',', AllJobs)).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var withFio = a.Get("--fio", "yes") != "no";
        var small = a.GetSize("--objects", 0);
        var omapKeys = a.GetSize("--omap-keys", 0);
        var options = new StoreOptions { IndexCacheBytes = a.GetSize("--cache", 64L << 20) };
        if (jobs.FirstOrDefault(j => !AllJobs.Contains(j)) is { } unknown)
        {
            Console.Error.WriteLine($"unknown job '{unknown}'; jobs are {string.Join(',', AllJobs)}");
            return 2;
        }
        if (withFio)
        {
            Fio.EnsureCommand("fio", "fio");
        }
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, "store.img");
        var fioPath = Path.Combine(dir, "fio.img");
        const int objectSize = 4 << 20;
        var objects = (int)Math.Min(64, size / 4 / objectSize);
        var duration = TimeSpan.FromSeconds(seconds);

        var results = new List<(string Job, int Round, double Ours, double Fio, string Unit)>();
        long memoryBefore, memoryAfter, metadata;
        await FillAsync(path, size, ct);
        if (withFio)
        {
            await FillAsync(fioPath, size, ct);
        }
        string[] Common(string name) => [$"--name={name}", $"--filename={fioPath}", "--direct=1", "--ioengine=libaio", "--time_based",
            $"--runtime={Math.Max(1, (int)Math.Round(seconds))}", $"--size={size}", "--randrepeat=0", "--norandommap"];
        double RunFio(string job) => !withFio ? double.NaN : job switch
        {
            "qd1" => Fio.Run([.. Common("qd1"), "--rw=randwrite", "--bs=4k", "--iodepth=1", "--fdatasync=1"]).WriteIops,
            "qd32" => Fio.Run([.. Common("qd32"), "--rw=randwrite", "--bs=4k", "--iodepth=32", "--fdatasync=32"]).WriteIops,
            "4m" => Fio.Run([.. Common("4m"), "--rw=write", "--bs=4m", "--iodepth=1", "--fdatasync=1"]).WriteBytesPerSecond / 1e6,
            _ => Fio.Run([.. Common("read"), "--rw=randread", "--bs=4k", "--iodepth=32"]).ReadIops,
        };

        await using (var dev = FileDevice.Open(path, new FileDeviceOptions { QueueDepth = 256 }))
        {
            await ObjectStore.MkfsAsync(dev, new MkfsOptions { Wipe = true }, ct);
            memoryBefore = GC.GetTotalMemory(forceFullCollection: true);
            await using var store = await ObjectStore.MountAsync(dev, options, ct);
            var data = new byte[objectSize];
            Random.Shared.NextBytes(data);
            await store.SubmitAsync(new Transaction().CreateCollection(Coll), ct);
            for (var i = 0; i < objects; i++)
            {
                await store.SubmitAsync(new Transaction().Write(Coll, $"obj{i}", 0, data), ct);
            }
            Console.WriteLine($"store: file {path} ({size >> 20} MiB, O_DIRECT {(dev.DirectIo ? "yes" : "no")}), {objects} objects of 4 MiB, {seconds} s per run" +
                (withFio ? $"; fio: file {fioPath}, same size, pre-filled, O_DIRECT, libaio" : ""));
            if (small > 0)
            {
                await FillSmallAsync(store, small, omapKeys, ct);
            }

            var turn = 0;
            foreach (var job in jobs)
            {
                for (var round = 1; round <= rounds; round++)
                {
                    // With rounds, alternate who goes first, so drift in the machine's load favours neither side.
                    var fioFirst = rounds > 1 && turn++ % 2 == 1;
                    var fio = fioFirst ? RunFio(job) : double.NaN;
                    var before = store.StatFs();
                    var (label, ours, unit) = await RunOursAsync(store, job, data, objects, duration, ct);
                    if (!fioFirst)
                    {
                        fio = RunFio(job);
                    }
                    results.Add((label, round, ours, fio, unit));
                    var after = store.StatFs();
                    var records = after.Records - before.Records;
                    var txns = after.Transactions - before.Transactions;
                    Console.WriteLine($"  {job}{(rounds > 1 ? $" #{round}" : "")}: {txns} transactions in {records} records ({(records == 0 ? 0 : (double)txns / records).ToString("F1", CultureInfo.InvariantCulture)} per record), " +
                        $"{after.Flushes - before.Flushes} flushes, {after.Checkpoints - before.Checkpoints} checkpoints");
                }
            }

            var stats = store.StatFs();
            metadata = stats.MetadataBytes;
            memoryAfter = GC.GetTotalMemory(forceFullCollection: true);
            Console.WriteLine($"write amplification {stats.WriteAmplification.ToString("F2", CultureInfo.InvariantCulture)}");
        }
        if (small > 0)
        {
            await using var dev = FileDevice.Open(path, new FileDeviceOptions { QueueDepth = 256 });
            var clock = Stopwatch.StartNew();
            await using var store = await ObjectStore.MountAsync(dev, options, ct);
            Console.WriteLine($"mount: {clock.Elapsed.TotalMilliseconds.ToString("F0", CultureInfo.InvariantCulture)} ms, " +
                $"{store.IndexStats.BytesRead / 1024} KiB of the index read, {store.StatFs().Objects} objects, index {store.StatFs().MetadataBytes >> 20} MiB");
        }

        Console.WriteLine($"{"job",-22} {"appliance",12} {"fio",12} {"unit",5} {"ratio",6}");
        foreach (var (job, round, ours, fio, unit) in results)
        {
            Console.WriteLine($"{(rounds > 1 ? $"{job} #{round}" : job),-22} {Fio.Format(ours),12} {(double.IsNaN(fio) ? "-" : Fio.Format(fio)),12} {unit,5} {Ratio(ours, fio),6}");
        }
        if (rounds > 1 && withFio)
        {
            foreach (var group in results.GroupBy(r => r.Job))
            {
                var ratios = group.Select(r => r.Ours / r.Fio).Order().ToList();
                var median = ratios.Count % 2 == 1 ? ratios[ratios.Count / 2] : (ratios[(ratios.Count / 2) - 1] + ratios[ratios.Count / 2]) / 2;
                Console.WriteLine($"{group.Key + " median",-22} {"",12} {"",12} {"",5} {median.ToString("0.00", CultureInfo.InvariantCulture),6}");
            }
        }
        Console.WriteLine($"store memory: managed heap {(memoryAfter - memoryBefore) / 1024} KiB more than before mount " +
            $"(metadata {metadata / 1024} KiB for {objects * 2} objects), process working set {Environment.WorkingSet >> 20} MiB");
        Console.WriteLine($"RSS: {PeakRssMiB()} MiB");
        File.Delete(path);
        File.Delete(fioPath);
        return 0;
    }

    /// <summary>The process's peak resident set (VmHWM), in MiB.</summary>
    private static long PeakRssMiB()
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line is null ? -1 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
    }

    /// <summary>Fills the store with <paramref name="n"/> small objects in 16 collections (4 KiB of data, two xattrs
    /// each) and <paramref name="omapKeys"/> omap keys spread over them, 256 objects per transaction, 8 in flight;
    /// then measures what a checkpoint writes after 1,000 single-object changes.</summary>
    private static async Task FillSmallAsync(ObjectStore store, long n, long omapKeys, CancellationToken ct)
    {
        var colls = Enumerable.Range(0, 16).Select(i => $"pg.{i:x}").ToArray();
        var create = new Transaction();
        foreach (var c in colls)
        {
            create.CreateCollection(c);
        }
        await store.SubmitAsync(create, ct);
        (string, ObjectId) Id(long i) => (colls[i % colls.Length], new ObjectId((uint)(i * 2654435761L), $"rbd_data.5e1f.{i:x16}"));
        var data = new byte[4096];
        Random.Shared.NextBytes(data);
        var keysPer = omapKeys / n;
        var extra = omapKeys % n;
        var clock = Stopwatch.StartNew();
        var window = new SemaphoreSlim(8);
        var inflight = new List<Task>();
        for (long first = 0; first < n; first += 256)
        {
            var t = new Transaction();
            for (var i = first; i < Math.Min(n, first + 256); i++)
            {
                var (c, id) = Id(i);
                t.Write(c, id, 0, data).SetXattr(c, id, "_", new byte[250]).SetXattr(c, id, "snapset", new byte[31]);
                for (var k = 0; k < keysPer + (i < extra ? 1 : 0); k++)
                {
                    t.OmapSet(c, id, $"{k:d10}", new byte[100]);
                }
            }
            await window.WaitAsync(ct);
            inflight.Add(store.SubmitAsync(t, ct).ContinueWith(x =>
            {
                window.Release();
                x.GetAwaiter().GetResult();
            }, TaskScheduler.Default));
            inflight.RemoveAll(x => x.IsCompletedSuccessfully);
        }
        await Task.WhenAll(inflight);
        var fill = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"filled {n} objects and {omapKeys} omap keys in {fill.ToString("F1", CultureInfo.InvariantCulture)} s " +
            $"({(n / fill).ToString("F0", CultureInfo.InvariantCulture)} objects/s), peak RSS {PeakRssMiB()} MiB");
        await store.CheckpointAsync(ct);
        var rng = new Random(5);
        for (var b = 0; b < 100; b++)
        {
            var t = new Transaction();
            for (var k = 0; k < 10; k++)
            {
                var (c, id) = Id(rng.NextInt64(n));
                t.SetXattr(c, id, "_", new byte[250]);
            }
            await store.SubmitAsync(t, ct);
        }
        var written = store.IndexStats.BytesWritten;
        clock.Restart();
        await store.CheckpointAsync(ct);
        Console.WriteLine($"checkpoint after 1000 object changes: {(store.IndexStats.BytesWritten - written) / 1024} KiB of index pages written " +
            $"in {clock.Elapsed.TotalMilliseconds.ToString("F0", CultureInfo.InvariantCulture)} ms");
    }

    private static string Ratio(double ours, double fio) =>
        double.IsNaN(fio) ? "-" : (ours / fio).ToString("0.00", CultureInfo.InvariantCulture);

    /// <summary>One run of one of our jobs: its label, figure and unit.</summary>
    private static async Task<(string Label, double Value, string Unit)> RunOursAsync(
        ObjectStore store, string job, byte[] data, int objects, TimeSpan duration, CancellationToken ct)
    {
        const int objectSize = 4 << 20;
        switch (job)
        {
            case "qd1":
            case "qd32":
            {
                var qd = job == "qd1" ? 1 : 32;
                var ops = await RunWorkersAsync(qd, duration, async rng =>
                    await store.SubmitAsync(new Transaction().Write(Coll, $"obj{rng.Next(objects)}", rng.Next(objectSize / 4096) * 4096L, data.AsSpan(0, 4096)), ct));
                return ($"4K overwrite QD{qd}", ops, "IOPS");
            }
            case "4m":
            {
                // The data is handed over, as a daemon hands over a received message (no copy into the
                // transaction; the store copies once into its aligned I/O buffer).
                var big = await RunWorkersAsync(1, duration, async rng =>
                    await store.SubmitAsync(new Transaction().WriteWithoutCopy(Coll, $"big{rng.Next(objects)}", 0, data), ct));
                return ("4M object write", big * objectSize / 1e6, "MB/s");
            }
            default:
            {
                var reads = await RunWorkersAsync(32, duration, async rng =>
                    await store.ReadAsync(Coll, $"obj{rng.Next(objects)}", rng.Next(objectSize / 4096) * 4096L, 4096, ct));
                return ("4K read QD32", reads, "IOPS");
            }
        }
    }

    /// <summary>Creates <paramref name="path"/> afresh and writes every byte of it (random data), durably.</summary>
    private static async Task FillAsync(string path, long size, CancellationToken ct)
    {
        File.Delete(path);
        await using var fill = FileDevice.CreateFile(path, size);
        using var chunk = new AlignedBuffer(4 << 20);
        new Random(1).NextBytes(chunk.GetSpan());
        for (long off = 0; off < fill.Size; off += chunk.Length)
        {
            await fill.WriteAsync(off, chunk.Memory[..(int)Math.Min(chunk.Length, fill.Size - off)], ct);
        }
        await fill.FlushAsync(ct);
    }

    /// <summary>Runs <paramref name="qd"/> workers doing <paramref name="op"/> back to back for the duration; ops/s.</summary>
    private static async Task<double> RunWorkersAsync(int qd, TimeSpan duration, Func<Random, Task> op)
    {
        long count = 0;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, qd).Select(async w =>
        {
            var rng = new Random(w + 1);
            while (clock.Elapsed < duration)
            {
                await op(rng);
                Interlocked.Increment(ref count);
            }
        }));
        return count / clock.Elapsed.TotalSeconds;
    }
}
