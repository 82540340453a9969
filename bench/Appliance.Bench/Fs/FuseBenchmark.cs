using System.Diagnostics;
using System.Globalization;
using Appliance.Bench.Common;
using Appliance.Platform.Native;

namespace Appliance.Bench.Fs;

/// <summary>
/// The overhead of our FUSE layer: fio (4 KiB random and 1 MiB sequential reads and writes, O_DIRECT so every I/O
/// crosses the layer rather than the page cache) and a create/stat/unlink loop over 10,000 files, on a mount of the
/// in-memory test filesystem (the appliance-testfs program) and on the local disk, in the same run.
/// </summary>
public sealed class FuseBenchmark : IBenchmark
{
    public string Name => "fuse";

    public string Description => "fio 4k random / 1M sequential + create/stat/unlink x10000: FUSE test fs vs local disk [--seconds 5] [--size 256M] [--files 10000] [--dir D]";

    public async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var a = new BenchArgs(args);
        var seconds = a.Get("--seconds", 5);
        var size = a.GetSize("--size", 256L << 20);
        var files = a.Get("--files", 10_000);
        var dir = a.Get("--dir", "/var/tmp/appliance-bench");
        if (Posix.getuid() != 0)
        {
            Console.Error.WriteLine("error: the fuse benchmark mounts with mount(2); run it as root");
            return 2;
        }
        Fio.EnsureCommand("fio", "fio");
        var program = FindTestFs();
        var local = Path.Combine(dir, "fuse-local");
        var mount = Path.Combine(dir, "fuse-mnt");
        Directory.CreateDirectory(local);
        Directory.CreateDirectory(mount);

        using var testfs = Process.Start(new ProcessStartInfo("dotnet") { ArgumentList = { program, mount }, RedirectStandardOutput = true })!;
        try
        {
            var line = await testfs.StandardOutput.ReadLineAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), ct);
            if (line != $"mounted {mount}")
            {
                Console.Error.WriteLine($"error: appliance-testfs did not mount {mount}: {line}");
                return 1;
            }
            Console.WriteLine($"fuse: FUSE mount of the in-memory test filesystem ({mount}) vs local disk ({local}); fio psync QD1, O_DIRECT, {seconds} s per job, file {size >> 20} MiB");
            Console.WriteLine($"{"job",-22} {"fuse",14} {"local disk",14} {"ratio",7}");
            var jobs = new (string Name, string Rw, string Bs, bool Iops)[]
            {
                ("4k randread IOPS", "randread", "4k", true),
                ("4k randwrite IOPS", "randwrite", "4k", true),
                ("1M read MiB/s", "read", "1M", false),
                ("1M write MiB/s", "write", "1M", false),
            };
            // Warm-up: the test filesystem's code starts at tier 0 of the JIT; let it be compiled for real first.
            RunFio(mount, "randrw", "4k", size, 2, iops: true);
            foreach (var job in jobs)
            {
                var ours = RunFio(mount, job.Rw, job.Bs, size, seconds, job.Iops);
                var theirs = RunFio(local, job.Rw, job.Bs, size, seconds, job.Iops);
                Print(job.Name, ours, theirs);
            }
            File.Delete(Path.Combine(mount, "fio.dat"));
            File.Delete(Path.Combine(local, "fio.dat"));
            foreach (var (phase, ours, theirs) in MetadataLoop(mount, local, files))
            {
                Print($"{phase} ops/s", ours, theirs);
            }
        }
        finally
        {
            try
            {
                Posix.umount2(mount, 0); // the program sees the unmount and exits
            }
            catch (PlatformException e)
            {
                Console.Error.WriteLine($"unmount {mount}: {e.Message}");
                Posix.umount2(mount, Constants.MNT_DETACH);
            }
            if (!testfs.WaitForExit(TimeSpan.FromSeconds(20)))
            {
                testfs.Kill();
            }
            Directory.Delete(local, recursive: true);
            if (testfs.HasExited)
            {
                Directory.Delete(mount);
            }
        }
        return 0;
    }

    private static double RunFio(string dir, string rw, string bs, long size, int seconds, bool iops)
    {
        var r = Fio.Run([
            "--name=fuse", $"--filename={Path.Combine(dir, "fio.dat")}", $"--rw={rw}", $"--bs={bs}", "--direct=1",
            "--ioengine=psync", "--iodepth=1", "--time_based", $"--runtime={seconds}", $"--size={size}", "--randrepeat=0",
            "--norandommap",
        ]);
        return iops ? r.ReadIops + r.WriteIops : (r.ReadBytesPerSecond + r.WriteBytesPerSecond) / (1 << 20);
    }

    /// <summary>create (open O_CREAT + close), stat, unlink of N files in one directory: each phase timed apart.</summary>
    private static IEnumerable<(string Phase, double Ours, double Theirs)> MetadataLoop(string mount, string local, int files)
    {
        var ours = Phases(Path.Combine(mount, "meta"), files);
        var theirs = Phases(Path.Combine(local, "meta"), files);
        foreach (var phase in ours.Keys)
        {
            yield return (phase, ours[phase], theirs[phase]);
        }
    }

    private static Dictionary<string, double> Phases(string dir, int files)
    {
        Directory.CreateDirectory(dir);
        var names = Enumerable.Range(0, files).Select(i => Path.Combine(dir, $"f{i:D6}")).ToArray();
        var result = new Dictionary<string, double>();
        var clock = Stopwatch.StartNew();
        foreach (var n in names)
        {
            Posix.close(Posix.open(n, Constants.O_WRONLY | Constants.O_CREAT | Constants.O_EXCL, 0x1A4));
        }
        result["create"] = files / clock.Elapsed.TotalSeconds;
        clock.Restart();
        foreach (var n in names)
        {
            Posix.lstatx(n);
        }
        result["stat"] = files / clock.Elapsed.TotalSeconds;
        clock.Restart();
        foreach (var n in names)
        {
            Posix.unlink(n);
        }
        result["unlink"] = files / clock.Elapsed.TotalSeconds;
        Directory.Delete(dir);
        return result;
    }

    private static void Print(string job, double ours, double theirs) =>
        Console.WriteLine($"{job,-22} {Fio.Format(ours),14} {Fio.Format(theirs),14} {(ours / theirs).ToString("0.00", CultureInfo.InvariantCulture),7}");

    /// <summary>The appliance-testfs program, built (incrementally, Release) so the figures are of the current code.</summary>
    private static string FindTestFs()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Appliance.sln")))
        {
            root = Path.GetDirectoryName(root.TrimEnd('/')) ?? throw new InvalidOperationException("cannot find the repository root (Appliance.sln) above the benchmark");
        }
        Console.WriteLine("# building tests/Fs.TestFs (Release)");
        Fio.RunChecked("dotnet", ["build", "-c", "Release", "-v", "q", Path.Combine(root, "tests", "Fs.TestFs", "Fs.TestFs.csproj")]);
        return Path.Combine(root, "tests", "Fs.TestFs", "bin", "Release", "net10.0", "appliance-testfs.dll");
    }
}
