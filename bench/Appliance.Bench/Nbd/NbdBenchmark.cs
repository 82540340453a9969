using System.Diagnostics;
using System.Globalization;
using Appliance.Bench.Common;
using Appliance.BlockDev.Images;
using Appliance.BlockDev.Nbd.Server;

namespace Appliance.Bench.Nbd;

/// <summary>
/// fio's nbd engine against our NBD server (in this process, local image) and against nbdkit's file plugin, each on
/// its own copy of the same fully written backing file, over unix sockets, in the same run: 4 KiB random read and
/// write at iodepth 1 and 32, 1 MiB sequential read and write. Prints both figures and ours/nbdkit; with --rounds N
/// each job runs N times on each side, interleaved (who goes first alternates), with each round's ratio and the
/// median (on a shared machine single runs swing a lot).
/// </summary>
public sealed class NbdBenchmark : IBenchmark
{
    public string Name => "nbd";

    public string Description => "fio nbd engine: our NBD server vs nbdkit file plugin, 4k rand r/w QD1/QD32, 1M seq r/w [--seconds 10] [--rounds 1] [--size 512M] [--dir D] [--tcp] [--only TEXT]";

    private sealed record Job(string Label, string Rw, string Bs, int Depth, bool Bandwidth);

    private static readonly Job[] Jobs =
    [
        new("4k randread QD1", "randread", "4k", 1, false),
        new("4k randread QD32", "randread", "4k", 32, false),
        new("4k randwrite QD1", "randwrite", "4k", 1, false),
        new("4k randwrite QD32", "randwrite", "4k", 32, false),
        new("1M read QD4", "read", "1m", 4, true),
        new("1M write QD4", "write", "1m", 4, true),
    ];

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var seconds = a.Get("--seconds", 10);
        var size = a.GetSize("--size", 512L << 20);
        var dir = Path.Combine(a.Get("--dir", "/var/tmp/appliance-bench"), "nbd");
        var tcp = args.Contains("--tcp");
        var only = a.Get("--only");
        // Each job runs this many times on each side, interleaved; only ratios from the same round compare.
        var rounds = Math.Max(1, a.Get("--rounds", 1));
        Fio.EnsureCommand("fio", "fio");
        Fio.EnsureCommand("nbdkit", "nbdkit");
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        var ours = Path.Combine(dir, "images", "bench");
        var theirs = Path.Combine(dir, "nbdkit.img");
        // Same kind of backing file for both: fully written (no holes), same size, same filesystem, same content, and
        // made the same way — both copied from one seed file. (Copying one side from the other was not the same
        // kind: a file written with large sequential writes and its copy_file_range copy sit differently in the page
        // cache, and perf showed ext4_block_write_begin costing several times more per 4 KiB rewrite on the former,
        // which alone moved the randwrite ratios between 0.3 and 1.2.)
        var seed = Path.Combine(dir, "seed.img");
        await FillAsync(seed, size, ct);
        File.Copy(seed, ours);
        File.Copy(seed, theirs);
        File.Delete(seed);

        var ourSocket = Path.Combine(dir, "ours.sock");
        var kitSocket = Path.Combine(dir, "nbdkit.sock");
        await using var server = new NbdServer(new NbdServerOptions { Catalog = new LocalImageStore(Path.Combine(dir, "images")), Log = Console.WriteLine });
        string ourUri, kitUri;
        var kitArgs = new List<string> { "--foreground", "--exit-with-parent" };
        if (tcp)
        {
            var ep = server.ListenTcp(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
            ourUri = $"nbd://127.0.0.1:{ep.Port}/bench";
            var port = FreePort();
            kitArgs.AddRange(["--ipaddr", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture)]);
            kitUri = $"nbd://127.0.0.1:{port}/";
        }
        else
        {
            server.ListenUnix(ourSocket);
            ourUri = $"nbd+unix:///bench?socket={ourSocket}";
            kitArgs.AddRange(["--unix", kitSocket]);
            kitUri = $"nbd+unix:///?socket={kitSocket}";
        }
        kitArgs.AddRange(["file", $"file={theirs}"]);
        var psi = new ProcessStartInfo("nbdkit") { RedirectStandardError = true, RedirectStandardOutput = true };
        kitArgs.ForEach(psi.ArgumentList.Add);
        using var nbdkit = Process.Start(psi) ?? throw new InvalidOperationException("cannot start nbdkit");
        try
        {
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < TimeSpan.FromSeconds(15) && !(tcp ? CanConnect(kitUri) : File.Exists(kitSocket)))
            {
                await Task.Delay(50, ct);
            }
            Console.WriteLine($"nbd: fio --ioengine=nbd, {seconds} s per job, backing files {size >> 20} MiB fully written on {dir}, {(tcp ? "TCP loopback" : "unix sockets")}; nbdkit {Version()} file plugin");
            // The server's CPU time per I/O (per MiB for the 1M jobs), both sides: a figure a busy machine disturbs far
            // less than throughput (ours is this whole process, so it includes the bench's own idle threads).
            Console.WriteLine($"{"job",-22} {"appliance",14} {"nbdkit",14} {"ratio",7}   {"cpu/op ours",9} {"nbdkit",9}");
            var worst = double.MaxValue;
            var round = 0;
            foreach (var job in Jobs.Where(j => only is null || j.Label.Contains(only, StringComparison.OrdinalIgnoreCase)))
            {
                var ratios = new List<double>();
                for (var r = 1; r <= rounds; r++)
                {
                    ct.ThrowIfCancellationRequested();
                    // Alternate who goes first, so drift in the machine's load does not always favour one side.
                    var oursFirst = round++ % 2 == 0;
                    var ourCpu = () => Process.GetCurrentProcess().TotalProcessorTime;
                    var kitCpu = () =>
                    {
                        nbdkit.Refresh();
                        return nbdkit.TotalProcessorTime;
                    };
                    var first = Run(oursFirst ? ourUri : kitUri, job, seconds, size, oursFirst ? ourCpu : kitCpu);
                    var second = Run(oursFirst ? kitUri : ourUri, job, seconds, size, oursFirst ? kitCpu : ourCpu);
                    var ((o, oc), (k, kc)) = oursFirst ? (first, second) : (second, first);
                    var unit = job.Bandwidth ? " MiB/s" : " IOPS";
                    var label = rounds == 1 ? job.Label : $"{job.Label} #{r}";
                    Console.WriteLine($"{label,-22} {Fio.Format(o) + unit,14} {Fio.Format(k) + unit,14} {(o / k).ToString("0.00", CultureInfo.InvariantCulture),7}   {Us(oc),9} {Us(kc),9}");
                    ratios.Add(o / k);
                }
                ratios.Sort();
                var median = ratios.Count % 2 == 1 ? ratios[ratios.Count / 2] : (ratios[(ratios.Count / 2) - 1] + ratios[ratios.Count / 2]) / 2;
                if (rounds > 1)
                {
                    Console.WriteLine($"{job.Label + " median",-22} {"",14} {"",14} {median.ToString("0.00", CultureInfo.InvariantCulture),7}");
                }
                worst = Math.Min(worst, median);
            }
            Console.WriteLine($"worst {(rounds > 1 ? "median " : "")}ratio {worst.ToString("0.00", CultureInfo.InvariantCulture)} (aim: >= 0.90 on every job)");
        }
        finally
        {
            if (!nbdkit.HasExited)
            {
                nbdkit.Kill();
                await nbdkit.WaitForExitAsync(CancellationToken.None);
            }
        }
        await server.DisposeAsync();
        Directory.Delete(dir, recursive: true);
        return 0;
    }

    /// <summary>One fio run: its figure (IOPS or MiB/s) and the server's CPU seconds per I/O (or per MiB).</summary>
    private static (double Figure, double CpuPerUnit) Run(string uri, Job job, int seconds, long size, Func<TimeSpan> serverCpu)
    {
        var cpu0 = serverCpu();
        var wall = Stopwatch.StartNew();
        var r = Fio.Run([
            "--name=nbd", "--ioengine=nbd", $"--uri={uri}", $"--rw={job.Rw}", $"--bs={job.Bs}", $"--iodepth={job.Depth}",
            $"--size={size}", "--time_based", $"--runtime={seconds}", "--ramp_time=1", "--randrepeat=0", "--norandommap",
        ]);
        // CPU per unit = cores used over the whole fio run (ramp and connection setup included) / units per second.
        var cores = (serverCpu() - cpu0).TotalSeconds / wall.Elapsed.TotalSeconds;
        var figure = job.Bandwidth
            ? (r.ReadBytesPerSecond + r.WriteBytesPerSecond) / (1 << 20)
            : r.ReadIops + r.WriteIops;
        return (figure, cores / figure);
    }

    private static string Us(double seconds) => (seconds * 1e6).ToString("0.0", CultureInfo.InvariantCulture) + " µs";

    private static async Task FillAsync(string path, long size, CancellationToken ct)
    {
        var chunk = new byte[4 << 20];
        new Random(1).NextBytes(chunk);
        await using var f = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        for (long p = 0; p < size; p += chunk.Length)
        {
            await f.WriteAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, size - p)), ct);
        }
        f.Flush(flushToDisk: true);
    }

    private static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        return ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
    }

    private static bool CanConnect(string uri)
    {
        try
        {
            var port = int.Parse(uri.Split(':')[2].TrimEnd('/'), CultureInfo.InvariantCulture);
            using var c = new System.Net.Sockets.TcpClient();
            c.Connect(System.Net.IPAddress.Loopback, port);
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    private static string Version()
    {
        try
        {
            return Fio.RunChecked("nbdkit", ["--version"]).Trim();
        }
        catch (InvalidOperationException)
        {
            return "(unknown version)";
        }
    }
}
