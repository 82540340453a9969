using System.Diagnostics;
using System.Globalization;
using System.Text;
using Appliance.Crush.Mapping;
using Appliance.Crush.Text;

namespace Appliance.Bench.Crush;

/// <summary>
/// `bench crush-map`: maps N inputs (default 1,000,000) with 3 replicas through `chooseleaf firstn 0 type host` on a
/// generated map of 40 hosts x 12 OSDs, single-threaded and on all cores, and times `crushtool --test` on the same
/// compiled map and range in the same run. Also checks that both give the same mappings.
/// </summary>
public sealed class CrushMapBenchmark : IBenchmark
{
    public string Name => "crush-map";

    public string Description => "CRUSH mappings/s (40 hosts x 12 OSDs, 3 replicas) vs crushtool --test";

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var count = 1_000_000;
        var threads = Environment.ProcessorCount;
        var runCrushtool = true;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--count" when i + 1 < args.Length:
                    count = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--threads" when i + 1 < args.Length:
                    threads = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--no-crushtool":
                    runCrushtool = false;
                    break;
                default:
                    await Console.Error.WriteLineAsync("usage: bench crush-map [--count N] [--threads N] [--no-crushtool]");
                    return 2;
            }
        }

        var dir = Directory.CreateTempSubdirectory("crush-bench-");
        try
        {
            var text = GenerateMapText(40, 12);
            var mapPath = Path.Combine(dir.FullName, "map.txt");
            await File.WriteAllTextAsync(mapPath, text, ct);
            var map = CrushMapParser.ParseMap(text);
            var mapper = new CrushMapper(map);
            var reweights = map.DefaultReweights();
            Console.WriteLine($"map: 40 hosts x 12 OSDs ({map.MaxDevices} OSDs), straw2, jewel tunables; rule 0: chooseleaf firstn 0 type host; {count:N0} inputs, 3 replicas");

            // Warm up the JIT so tiered compilation has settled before timing.
            MapRange(mapper, reweights, 0, 50_000, null);

            var process = Process.GetCurrentProcess();
            var cpu0 = process.TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            var checksum = MapRange(mapper, reweights, 0, count, null);
            sw.Stop();
            process.Refresh();
            var singleCpu = count / (process.TotalProcessorTime - cpu0).TotalSeconds;
            var single = count / sw.Elapsed.TotalSeconds;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ours, 1 thread:      {single,12:N0} mappings/s ({sw.Elapsed.TotalSeconds:0.000} s); per CPU second {singleCpu,12:N0}"));

            var multi = single;
            if (threads > 1)
            {
                sw.Restart();
                var per = (count + threads - 1) / threads;
                var sums = new long[threads];
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                {
                    var from = t * per;
                    var to = Math.Min(count, from + per);
                    sums[t] = from < to ? MapRange(mapper, reweights, from, to, null) : 0;
                });
                sw.Stop();
                multi = count / sw.Elapsed.TotalSeconds;
                if (sums.Sum() != checksum)
                {
                    Console.WriteLine("error: the parallel run gave other mappings than the single-threaded run");
                    return 1;
                }
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ours, {threads} threads:     {multi,12:N0} mappings/s ({sw.Elapsed.TotalSeconds:0.000} s)"));
            }

            // Like crushtool --show-mappings: map and write every line to a file.
            var oursOut = Path.Combine(dir.FullName, "ours.txt");
            sw.Restart();
            await using (var writer = new StreamWriter(oursOut, false, new UTF8Encoding(false), 1 << 20))
            {
                MapRange(mapper, reweights, 0, count, writer);
            }
            sw.Stop();
            var withOutput = count / sw.Elapsed.TotalSeconds;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ours, 1 thread, lines to a file: {withOutput,12:N0} mappings/s ({sw.Elapsed.TotalSeconds:0.000} s)"));

            if (!runCrushtool)
            {
                return 0;
            }
            if (!await EnsureCrushtoolAsync(ct))
            {
                Console.WriteLine("crushtool is not available; only our figures are shown.");
                return 1;
            }
            var binPath = Path.Combine(dir.FullName, "map.bin");
            var (rc, err) = await ShellAsync($"crushtool -c '{mapPath}' -o '{binPath}'", ct);
            if (rc != 0)
            {
                Console.WriteLine($"error: crushtool -c failed: {err}");
                return 1;
            }
            // crushtool loses output written into a pipe: redirect it to a file.
            // `times` reports the child's CPU seconds, so the per-CPU-second figures stay comparable on a busy machine.
            var refOut = Path.Combine(dir.FullName, "crushtool.txt");
            sw.Restart();
            string times;
            (rc, err, times) = await ShellWithOutputAsync(
                $"crushtool -i '{binPath}' --test --rule 0 --num-rep 3 --min-x 0 --max-x {count - 1} --show-mappings > '{refOut}'; rc=$?; times; exit $rc", ct);
            sw.Stop();
            if (rc != 0)
            {
                Console.WriteLine($"error: crushtool --test failed: {err}");
                return 1;
            }
            var reference = count / sw.Elapsed.TotalSeconds;
            var referenceCpu = count / ChildCpuSeconds(times);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"crushtool --test --show-mappings: {reference,12:N0} mappings/s ({sw.Elapsed.TotalSeconds:0.000} s); per CPU second {referenceCpu,12:N0}"));

            sw.Restart();
            (rc, _, times) = await ShellWithOutputAsync($"crushtool -i '{binPath}' --test --rule 0 --num-rep 3 --min-x 0 --max-x {count - 1} > /dev/null 2>&1; times", ct);
            sw.Stop();
            var referenceQuiet = count / sw.Elapsed.TotalSeconds;
            var referenceQuietCpu = count / ChildCpuSeconds(times);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"crushtool --test (no output):     {referenceQuiet,12:N0} mappings/s ({sw.Elapsed.TotalSeconds:0.000} s); per CPU second {referenceQuietCpu,12:N0}"));

            var agree = CompareOutputs(oursOut, refOut, out var detail);
            Console.WriteLine(agree ? $"outputs agree on all {count:N0} inputs" : $"outputs DIFFER: {detail}");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ratio ours/crushtool (wall clock): {single / reference:0.00}x single-thread, {multi / reference:0.00}x on {threads} threads, {withOutput / reference:0.00}x writing lines (vs crushtool --show-mappings); {single / referenceQuiet:0.00}x single-thread vs crushtool without output"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ratio per CPU second, single thread: {singleCpu / referenceCpu:0.00}x vs crushtool --show-mappings, {singleCpu / referenceQuietCpu:0.00}x vs crushtool without output"));
            return agree ? 0 : 1;
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>40 hosts x 12 OSDs under one root; OSD weights vary (1.0 to 4.0 TB-like) so the draw is weighted.</summary>
    internal static string GenerateMapText(int hosts, int osdsPerHost)
    {
        var sb = new StringBuilder();
        sb.Append("tunable choose_local_tries 0\ntunable choose_local_fallback_tries 0\ntunable choose_total_tries 50\n");
        sb.Append("tunable chooseleaf_descend_once 1\ntunable chooseleaf_vary_r 1\ntunable chooseleaf_stable 1\n");
        sb.Append("tunable straw_calc_version 1\ntunable allowed_bucket_algs 54\n");
        var n = hosts * osdsPerHost;
        for (var i = 0; i < n; i++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"device {i} osd.{i} class hdd\n");
        }
        sb.Append("type 0 osd\ntype 1 host\ntype 10 root\n");
        string[] weights = ["1.819", "3.638", "1.000", "2.729"];
        for (var h = 0; h < hosts; h++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"host host{h} {{\n\tid {-2 - h}\n\talg straw2\n\thash 0\n");
            for (var o = 0; o < osdsPerHost; o++)
            {
                var id = h * osdsPerHost + o;
                sb.Append(CultureInfo.InvariantCulture, $"\titem osd.{id} weight {weights[(id * 7 + h) % weights.Length]}\n");
            }
            sb.Append("}\n");
        }
        sb.Append("root default {\n\tid -1\n\talg straw2\n\thash 0\n");
        for (var h = 0; h < hosts; h++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"\titem host{h}\n");
        }
        sb.Append("}\n");
        sb.Append("rule replicated_rule {\n\tid 0\n\ttype replicated\n\tmin_size 1\n\tmax_size 10\n\tstep take default\n\tstep chooseleaf firstn 0 type host\n\tstep emit\n}\n");
        return sb.ToString();
    }

    private static long MapRange(CrushMapper mapper, uint[] reweights, int from, int to, TextWriter? output)
    {
        var ws = new CrushWorkspace(mapper);
        Span<int> result = stackalloc int[3];
        long sum = 0;
        var line = new StringBuilder(48);
        for (var x = from; x < to; x++)
        {
            var n = mapper.Map(0, x, 3, reweights, result, ws);
            for (var i = 0; i < n; i++)
            {
                sum += result[i] * (i + 1);
            }
            if (output is not null)
            {
                line.Clear();
                line.Append(x).Append(' ');
                for (var i = 0; i < n; i++)
                {
                    if (i > 0)
                    {
                        line.Append(',');
                    }
                    line.Append(result[i]);
                }
                line.Append('\n');
                output.Write(line);
            }
        }
        return sum;
    }

    private static bool CompareOutputs(string ours, string crushtool, out string detail)
    {
        using var a = new StreamReader(ours);
        using var b = new StreamReader(crushtool);
        var n = 0;
        while (true)
        {
            var la = a.ReadLine();
            string? lb;
            do
            {
                lb = b.ReadLine();
            }
            while (lb is not null && !lb.StartsWith("CRUSH rule ", StringComparison.Ordinal));
            if (la is null || lb is null)
            {
                detail = la is null && lb is null ? "" : $"different line counts after {n} lines";
                return la is null && lb is null;
            }
            // "CRUSH rule 0 x 42 [1,2,3]" -> "42 1,2,3"
            var xAt = lb.IndexOf(" x ", StringComparison.Ordinal);
            var open = lb.IndexOf('[', StringComparison.Ordinal);
            var converted = lb[(xAt + 3)..open].Trim() + " " + lb[(open + 1)..^1];
            if (converted.TrimEnd() != la.TrimEnd())
            {
                detail = $"line {n + 1}: ours '{la}', crushtool '{lb}'";
                return false;
            }
            n++;
        }
    }

    private static async Task<bool> EnsureCrushtoolAsync(CancellationToken ct)
    {
        if ((await ShellAsync("command -v crushtool", ct)).Code == 0)
        {
            return true;
        }
        // Debian ships crushtool in ceph-base (which pulls in ceph-common).
        Console.WriteLine("crushtool is missing: installing it with 'apt-get install -y ceph-common ceph-base' ...");
        var (rc, _) = await ShellAsync("apt-get install -y ceph-common ceph-base > /tmp/crush-bench-apt.log 2>&1 || (apt-get update > /dev/null 2>&1 && apt-get install -y ceph-common ceph-base > /tmp/crush-bench-apt.log 2>&1)", ct);
        if (rc != 0)
        {
            Console.WriteLine("apt-get failed; see /tmp/crush-bench-apt.log");
        }
        return (await ShellAsync("command -v crushtool", ct)).Code == 0;
    }

    /// <summary>Sums the children's user and system times from the second line of bash's `times` ("0m1.641s 0m0.103s").</summary>
    private static double ChildCpuSeconds(string times)
    {
        var lines = times.Trim().Split('\n');
        var total = 0.0;
        foreach (var part in lines[^1].Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var mAt = part.IndexOf('m', StringComparison.Ordinal);
            total += double.Parse(part[..mAt], CultureInfo.InvariantCulture) * 60 +
                double.Parse(part[(mAt + 1)..^1], CultureInfo.InvariantCulture);
        }
        return Math.Max(total, 1e-3);
    }

    private static async Task<(int Code, string Error)> ShellAsync(string command, CancellationToken ct)
    {
        var (code, error, _) = await ShellWithOutputAsync(command, ct);
        return (code, error);
    }

    private static async Task<(int Code, string Error, string Output)> ShellWithOutputAsync(string command, CancellationToken ct)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(command);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start bash");
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        // Bounded: a benchmark step that hangs for 10 minutes is broken.
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromMinutes(10));
        try
        {
            await p.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }
        return (p.ExitCode, (await stderr).Trim(), await stdout);
    }
}
