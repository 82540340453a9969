using System.Globalization;
using System.Text.Json;
using Appliance.Bench.Common;

namespace Appliance.Bench.Cluster;

/// <summary>
/// fio through NBD (unix socket) against a cluster image: a local cluster of ours (`appliance cluster up`, 3 OSDs,
/// pool `data` of size 3) whose own NBD server (`cluster up` runs it) serves image data/disk0; fio's nbd engine runs
/// 1 MiB sequential write and read with 16 in flight (the write fills the region the random jobs use), 4 KiB random
/// write and read at QD32, and 4 KiB random write at QD1 with a flush after each write (what a database in a VM does).
/// Prints IOPS, MB/s, p50/p99 completion latency and the NBD server's RSS. The issue's reference side (the same jobs
/// with fio's rbd engine on ../shared/reference/ceph) is not run by this job yet: it prints ours only.
/// </summary>
public sealed class ClusterNbdBenchmark : IBenchmark
{
    public string Name => "cluster-nbd";

    public string Description => "fio's nbd engine on a cluster image over the local cluster's NBD unix socket: 1M write/read QD16, 4K randwrite/randread QD32, 4K randwrite+fsync QD1, p50/p99, server RSS [--seconds 20] [--size 1G] [--dir D] [--disk-size 8G] [--appliance PATH]";

    private sealed record Job(string Label, string Rw, string Bs, int Depth, bool FsyncEach, bool Bandwidth);

    private static readonly Job[] Jobs =
    [
        new("1M write QD16", "write", "1m", 16, false, true),
        new("1M read QD16", "read", "1m", 16, false, true),
        new("4K randwrite QD32", "randwrite", "4k", 32, false, false),
        new("4K randread QD32", "randread", "4k", 32, false, false),
        new("4K randwrite+flush QD1", "randwrite", "4k", 1, true, false),
    ];

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var seconds = a.Get("--seconds", 20);
        var size = a.Get("--size", "1G");
        var diskSize = a.Get("--disk-size", "8G");
        var baseDir = a.Get("--dir", "/var/tmp/appliance-bench");
        var appliance = a.Get("--appliance") ?? ClusterObjectsBenchmark.DefaultAppliance(ClusterObjectsBenchmark.RepoRoot());
        if (!File.Exists(appliance))
        {
            Console.Error.WriteLine($"error: {appliance} does not exist; build it (dotnet build -c Release bench/Appliance.Bench builds node/Cli too) or give --appliance PATH");
            return 2;
        }
        Fio.EnsureCommand("fio", "fio");
        Directory.CreateDirectory(baseDir);
        var dataDir = Path.Combine(baseDir, $"cluster-nbd-{Environment.ProcessId}");
        var ours = new ClusterObjectsBenchmark.OurCluster(appliance, dataDir);
        var socket = Path.Combine(dataDir, "run", "nbd.sock");
        var uri = $"nbd+unix:///data/disk0?socket={socket}";
        Console.WriteLine($"cluster-nbd: 3 OSDs, size 3, sparse {diskSize} disks on {baseDir}; fio nbd engine on {uri}, {size} region, {seconds} s per job");
        Console.WriteLine("reference: fio's rbd engine on ../shared/reference/ceph is not run by this job (ours only)");
        try
        {
            var up = await ours.UpAsync(diskSize, ct);
            Console.WriteLine($"ours: cluster up {up:0.0} s");
            Console.WriteLine($"{"job",-24} {"IOPS",10} {"MB/s",8} {"p50 ms",8} {"p99 ms",8}");
            foreach (var job in Jobs)
            {
                ct.ThrowIfCancellationRequested();
                List<string> options =
                [
                    "--name=bench", "--ioengine=nbd", $"--uri={uri}", $"--rw={job.Rw}", $"--bs={job.Bs}", $"--iodepth={job.Depth}",
                    $"--size={size}", "--randrepeat=0", "--output-format=json",
                ];
                // The write that fills the region runs to its end; the others for --seconds.
                if (job.Label != Jobs[0].Label)
                {
                    options.AddRange(["--time_based=1", $"--runtime={seconds.ToString(CultureInfo.InvariantCulture)}"]);
                }
                if (job.FsyncEach)
                {
                    options.Add("--fsync=1");
                }
                var (output, _) = await ClusterObjectsBenchmark.Proc.RunAsync(("fio", options), TimeSpan.FromSeconds((seconds * 3) + 600), ct, locked: true);
                var (iops, bw, p50, p99) = Parse(output, job.Rw.Contains("write", StringComparison.Ordinal) ? "write" : "read");
                Console.WriteLine($"{job.Label,-24} {iops,10:0} {bw / 1e6,8:0.0} {p50,8:0.000} {p99,8:0.000}");
            }
            var pidFile = Path.Combine(dataDir, "run", "nbd.pid");
            if (File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile).Trim(), CultureInfo.InvariantCulture, out var pid))
            {
                Console.WriteLine($"NBD server RSS {ClusterObjectsBenchmark.Proc.Status(pid, "VmRSS") >> 20} MiB (peak {ClusterObjectsBenchmark.Proc.Status(pid, "VmHWM") >> 20} MiB)");
            }
        }
        finally
        {
            await ours.DownAsync(purge: true);
        }
        return 0;
    }

    /// <summary>IOPS, bytes/s, and completion latency p50/p99 in ms of one direction of fio's JSON.</summary>
    private static (double Iops, double Bw, double P50, double P99) Parse(string output, string direction)
    {
        using var doc = JsonDocument.Parse(output[output.IndexOf('{', StringComparison.Ordinal)..]);
        var d = doc.RootElement.GetProperty("jobs")[0].GetProperty(direction);
        var percentiles = d.GetProperty("clat_ns").TryGetProperty("percentile", out var p) ? p : default;
        double Pct(string key) => percentiles.ValueKind == JsonValueKind.Object && percentiles.TryGetProperty(key, out var v) ? v.GetDouble() / 1e6 : double.NaN;
        return (d.GetProperty("iops").GetDouble(), d.GetProperty("bw_bytes").GetDouble(), Pct("50.000000"), Pct("99.000000"));
    }
}
