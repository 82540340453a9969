using System.Diagnostics;
using System.Globalization;
using Appliance.Bench.Common;
using Appliance.Platform.Devices;

namespace Appliance.Bench.Device;

/// <summary>
/// 4 KiB random writes through the device layer (FileDevice: O_DIRECT + Linux AIO) with a flush per batch, at QD1
/// (write, flush) and QD32 (32 writes in flight, then one flush), beside fio's libaio engine doing the same job
/// (iodepth=N, fdatasync=N) on the same pre-filled file in the same run.
/// </summary>
public sealed class DeviceRandWriteBenchmark : IBenchmark
{
    public string Name => "device-randwrite";

    public string Description => "4 KiB random writes + flush per batch, QD1 and QD32: device layer vs fio [--dir D] [--size 256M] [--seconds 10]";

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var dir = a.Get("--dir", "/var/tmp/appliance-bench");
        var size = a.GetSize("--size", 256L << 20);
        var seconds = a.Get("--seconds", 10);
        Fio.EnsureCommand("fio", "fio");
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, "device-randwrite.img");
        File.Delete(path);

        // Fill the file once so neither side pays for block allocation during its run.
        await using (var dev = FileDevice.CreateFile(path, size))
        {
            using var chunk = new AlignedBuffer(1 << 20);
            new Random(1).NextBytes(chunk.GetSpan());
            for (long off = 0; off < dev.Size; off += chunk.Length)
            {
                await dev.WriteAsync(off, chunk.Memory, ct);
            }
            await dev.FlushAsync(ct);
        }

        Console.WriteLine($"device-randwrite: 4 KiB random writes, one flush (fdatasync) per batch of QD writes; file {path} ({size >> 20} MiB, O_DIRECT), {seconds} s per run");
        Console.WriteLine($"{"job",-6} {"appliance IOPS",15} {"fio IOPS",12} {"ratio",7}");
        foreach (var qd in new[] { 1, 32 })
        {
            var ours = await OursAsync(path, qd, TimeSpan.FromSeconds(seconds), ct);
            var fio = Fio.Run([
                "--name=randwrite", $"--filename={path}", "--rw=randwrite", "--bs=4k", "--direct=1",
                "--ioengine=libaio", $"--iodepth={qd}", $"--fdatasync={qd}", "--time_based", $"--runtime={seconds}",
                $"--size={size}", "--randrepeat=0", "--norandommap",
            ]).WriteIops;
            Console.WriteLine($"{"QD" + qd,-6} {Fio.Format(ours),15} {Fio.Format(fio),12} {(ours / fio).ToString("0.00", CultureInfo.InvariantCulture),7}");
        }
        File.Delete(path);
        return 0;
    }

    private static async Task<double> OursAsync(string path, int qd, TimeSpan duration, CancellationToken ct)
    {
        await using var dev = FileDevice.Open(path, new FileDeviceOptions { RequireDirectIo = true, QueueDepth = Math.Max(qd, 8) });
        var blocks = dev.Size / 4096;
        var buffers = Enumerable.Range(0, qd).Select(_ => new AlignedBuffer(4096)).ToArray();
        foreach (var b in buffers)
        {
            Random.Shared.NextBytes(b.GetSpan());
        }
        var random = new Random(2);
        var tasks = new Task[qd];
        long writes = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < duration && !ct.IsCancellationRequested)
        {
            for (var i = 0; i < qd; i++)
            {
                tasks[i] = dev.WriteAsync(random.NextInt64(blocks) * 4096, buffers[i].Memory, ct).AsTask();
            }
            await Task.WhenAll(tasks);
            await dev.FlushAsync(ct);
            writes += qd;
        }
        var elapsed = clock.Elapsed.TotalSeconds;
        foreach (var b in buffers)
        {
            b.Dispose();
        }
        return writes / elapsed;
    }
}
