using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Appliance.Bench.Common;

/// <summary>Runs fio (the reference for disk figures) and reads its JSON result.</summary>
public static class Fio
{
    public sealed record Result(double ReadIops, double WriteIops, double ReadBytesPerSecond, double WriteBytesPerSecond);

    /// <summary>Installs a Debian package when the command it provides is missing (benchmarks set themselves up).</summary>
    public static void EnsureCommand(string command, string package)
    {
        if (Which(command) is not null)
        {
            return;
        }
        Console.WriteLine($"# {command} is missing: installing Debian package {package}");
        try
        {
            RunChecked("apt-get", ["install", "-y", "-q", package], env: ("DEBIAN_FRONTEND", "noninteractive"));
        }
        catch (InvalidOperationException)
        {
            // A fresh machine has no package lists yet: fetch them once and try again.
            RunChecked("apt-get", ["update", "-q"]);
            RunChecked("apt-get", ["install", "-y", "-q", package], env: ("DEBIAN_FRONTEND", "noninteractive"));
        }
        if (Which(command) is null)
        {
            throw new InvalidOperationException($"{command} still missing after installing {package}");
        }
    }

    public static string? Which(string command) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin")
            .Split(':')
            .Select(d => Path.Combine(d, command))
            .FirstOrDefault(File.Exists);

    /// <summary>Runs fio with the given job options (each `--name=value`) and returns the summed job figures.</summary>
    public static Result Run(IEnumerable<string> options)
    {
        var output = RunChecked("fio", [.. options, "--output-format=json"]);
        // fio may print warnings before the JSON document.
        var json = output[output.IndexOf('{', StringComparison.Ordinal)..];
        using var doc = JsonDocument.Parse(json);
        double ri = 0, wi = 0, rb = 0, wb = 0;
        foreach (var job in doc.RootElement.GetProperty("jobs").EnumerateArray())
        {
            ri += job.GetProperty("read").GetProperty("iops").GetDouble();
            wi += job.GetProperty("write").GetProperty("iops").GetDouble();
            rb += job.GetProperty("read").GetProperty("bw_bytes").GetDouble();
            wb += job.GetProperty("write").GetProperty("bw_bytes").GetDouble();
        }
        return new Result(ri, wi, rb, wb);
    }

    public static string RunChecked(string file, IReadOnlyList<string> args, (string, string)? env = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        if (env is { } e)
        {
            psi.Environment[e.Item1] = e.Item2;
        }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {p.ExitCode}: {stderr.Result}");
        }
        return stdout;
    }

    public static string Format(double value) => value.ToString("N0", CultureInfo.InvariantCulture);
}
