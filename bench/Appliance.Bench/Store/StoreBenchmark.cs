using System.Diagnostics;
using System.Globalization;
using Appliance.Bench.Common;
using Appliance.Platform.Devices;
using Appliance.Store;

namespace Appliance.Bench.Store;

/// <summary>
/// The object store beside fio on the same file (O_DIRECT), in one run: durable 4 KiB random overwrites of existing
/// objects at QD1 and QD32 (fio: fdatasync per write at QD1, per 32 writes at QD32), 4 MiB object writes, each
/// durable (fio: 4 MiB sequential writes, fdatasync per write), and 4 KiB random reads at QD32. Our runs go first;
/// fio then runs over the same file (it overwrites the store). Also prints the store's memory use.
/// </summary>
public sealed class StoreBenchmark : IBenchmark
{
    public string Name => "store";

    public string Description => "object store vs fio: 4K durable overwrites QD1/QD32, 4M object writes, 4K random reads [--dir D] [--size 1G] [--seconds 3]";

    private const string Coll = "bench";

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var dir = a.Get("--dir", "/var/tmp/appliance-bench");
        var size = a.GetSize("--size", 1L << 30);
        var seconds = a.Get("--seconds", 3.0);
        Fio.EnsureCommand("fio", "fio");
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, "store.img");
        File.Delete(path);
        const int objectSize = 4 << 20;
        var objects = (int)Math.Min(64, size / 4 / objectSize);
        var duration = TimeSpan.FromSeconds(seconds);

        var results = new List<(string Job, double Ours, double Fio, string Unit)>();
        long memoryBefore, memoryAfter, metadata;
        // Fill the file once so that neither side pays for the host filesystem's block allocation during its run.
        await using (var fill = FileDevice.CreateFile(path, size))
        {
            using var chunk = new AlignedBuffer(4 << 20);
            new Random(1).NextBytes(chunk.GetSpan());
            for (long off = 0; off < fill.Size; off += chunk.Length)
            {
                await fill.WriteAsync(off, chunk.Memory[..(int)Math.Min(chunk.Length, fill.Size - off)], ct);
            }
            await fill.FlushAsync(ct);
        }
        await using (var dev = FileDevice.Open(path, new FileDeviceOptions { QueueDepth = 256 }))
        {
            await ObjectStore.MkfsAsync(dev, new MkfsOptions { Wipe = true }, ct);
            memoryBefore = GC.GetTotalMemory(forceFullCollection: true);
            await using var store = await ObjectStore.MountAsync(dev, null, ct);
            var data = new byte[objectSize];
            Random.Shared.NextBytes(data);
            await store.SubmitAsync(new Transaction().CreateCollection(Coll), ct);
            for (var i = 0; i < objects; i++)
            {
                await store.SubmitAsync(new Transaction().Write(Coll, $"obj{i}", 0, data), ct);
            }
            Console.WriteLine($"store: file {path} ({size >> 20} MiB, O_DIRECT {(dev.DirectIo ? "yes" : "no")}), {objects} objects of 4 MiB, {seconds} s per run");

            foreach (var qd in new[] { 1, 32 })
            {
                var ops = await RunWorkersAsync(qd, duration, async rng =>
                    await store.SubmitAsync(new Transaction().Write(Coll, $"obj{rng.Next(objects)}", rng.Next(objectSize / 4096) * 4096L, data.AsSpan(0, 4096)), ct));
                results.Add(($"4K overwrite QD{qd}", ops, 0, "IOPS"));
            }
            var big = await RunWorkersAsync(1, duration, async rng =>
                await store.SubmitAsync(new Transaction().Write(Coll, $"big{rng.Next(objects)}", 0, data), ct));
            results.Add(("4M object write", big * objectSize / 1e6, 0, "MB/s"));
            var reads = await RunWorkersAsync(32, duration, async rng =>
                await store.ReadAsync(Coll, $"obj{rng.Next(objects)}", rng.Next(objectSize / 4096) * 4096L, 4096, ct));
            results.Add(("4K read QD32", reads, 0, "IOPS"));

            metadata = store.StatFs().MetadataBytes;
            var wa = store.StatFs().WriteAmplification;
            memoryAfter = GC.GetTotalMemory(forceFullCollection: true);
            Console.WriteLine($"write amplification {wa.ToString("F2", CultureInfo.InvariantCulture)}");
        }

        string[] Common(string name) => [$"--name={name}", $"--filename={path}", "--direct=1", "--ioengine=libaio", "--time_based",
            $"--runtime={Math.Max(1, (int)Math.Round(seconds))}", $"--size={size}", "--randrepeat=0", "--norandommap"];
        results[0] = results[0] with { Fio = Fio.Run([.. Common("qd1"), "--rw=randwrite", "--bs=4k", "--iodepth=1", "--fdatasync=1"]).WriteIops };
        results[1] = results[1] with { Fio = Fio.Run([.. Common("qd32"), "--rw=randwrite", "--bs=4k", "--iodepth=32", "--fdatasync=32"]).WriteIops };
        results[2] = results[2] with { Fio = Fio.Run([.. Common("4m"), "--rw=write", "--bs=4m", "--iodepth=1", "--fdatasync=1"]).WriteBytesPerSecond / 1e6 };
        results[3] = results[3] with { Fio = Fio.Run([.. Common("read"), "--rw=randread", "--bs=4k", "--iodepth=32"]).ReadIops };

        Console.WriteLine($"{"job",-18} {"appliance",12} {"fio",12} {"unit",5} {"ratio",6}");
        foreach (var (job, ours, fio, unit) in results)
        {
            Console.WriteLine($"{job,-18} {Fio.Format(ours),12} {Fio.Format(fio),12} {unit,5} {(ours / fio).ToString("0.00", CultureInfo.InvariantCulture),6}");
        }
        Console.WriteLine($"store memory: managed heap {(memoryAfter - memoryBefore) / 1024} KiB more than before mount " +
            $"(metadata {metadata / 1024} KiB for {objects * 2} objects), process working set {Environment.WorkingSet >> 20} MiB");
        File.Delete(path);
        return 0;
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
