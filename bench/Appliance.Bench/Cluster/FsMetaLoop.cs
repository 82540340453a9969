using System.Diagnostics;
using System.Globalization;
using Appliance.Platform.Native;

namespace Appliance.Bench.Cluster;

/// <summary>
/// The metadata program `fs-cluster` runs on each mount, as a child process of its own (so it runs under the bench
/// lock and its CPU is counted apart): one phase over N files f000000.. in one directory — create (open
/// O_CREAT|O_EXCL + close), stat (statx without following links) or unlink. Prints `ops/s P50 P99` (ms) on one line.
/// </summary>
public sealed class FsMetaLoop : IBenchmark
{
    public string Name => "fs-meta-loop";

    public string Description => "(run by fs-cluster) one metadata phase on a directory: fs-meta-loop create|stat|unlink DIR N";

    public Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        if (args.Length != 3 || args[0] is not ("create" or "stat" or "unlink"))
        {
            Console.Error.WriteLine("usage: fs-meta-loop create|stat|unlink DIR N");
            return Task.FromResult(2);
        }
        var (phase, dir, n) = (args[0], args[1], int.Parse(args[2], CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        var names = Enumerable.Range(0, n).Select(i => Path.Combine(dir, $"f{i:D6}")).ToArray();
        var latency = new double[n];
        var total = Stopwatch.StartNew();
        for (var i = 0; i < n; i++)
        {
            var t = Stopwatch.GetTimestamp();
            switch (phase)
            {
                case "create":
                    Posix.close(Posix.open(names[i], Constants.O_WRONLY | Constants.O_CREAT | Constants.O_EXCL, 0x1A4));
                    break;
                case "stat":
                    Posix.lstatx(names[i]);
                    break;
                default:
                    Posix.unlink(names[i]);
                    break;
            }
            latency[i] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
        }
        var seconds = total.Elapsed.TotalSeconds;
        Array.Sort(latency);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{n / seconds:0.0} {latency[n / 2]:0.000} {latency[Math.Min(n - 1, n * 99 / 100)]:0.000}"));
        return Task.FromResult(0);
    }
}
