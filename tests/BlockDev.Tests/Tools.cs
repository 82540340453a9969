using System.Diagnostics;
using System.Text;

namespace Appliance.BlockDev.Tests;

/// <summary>Finds the real client tools and runs them. A missing tool FAILS the test, naming its Debian package.</summary>
public static class Tools
{
    public static string Require(string command, string package)
    {
        var path = (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':')
            .Append("/usr/sbin").Append("/sbin")
            .Select(d => Path.Combine(d, command))
            .FirstOrDefault(File.Exists);
        Assert.True(path is not null, $"{command} is not installed: install the Debian package '{package}' (it is listed in scripts/test-packages.txt; the README's test command installs it)");
        return path!;
    }

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public string All => Stdout + Stderr;
    }

    /// <summary>Runs a program to completion (killed after <paramref name="timeout"/>), returning its output.</summary>
    public static async Task<Result> RunAsync(string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await p.StandardInput.WriteAsync(stdin);
            p.StandardInput.Close();
        }
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(120));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync();
            Assert.Fail($"{file} {string.Join(' ', args)} did not finish within {timeout ?? TimeSpan.FromSeconds(120)}; output: {await stdout} {await stderr}");
        }
        return new Result(p.ExitCode, await stdout, await stderr);
    }

    /// <summary>Runs and asserts exit code 0, showing the command and its output otherwise.</summary>
    public static async Task<Result> RunOkAsync(string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null)
    {
        var list = args.ToList();
        var r = await RunAsync(file, list, timeout, stdin);
        Assert.True(r.ExitCode == 0, $"{file} {string.Join(' ', list)} exited {r.ExitCode}:\n{r.Stdout}\n{r.Stderr}");
        return r;
    }

    /// <summary>The seed of a randomized test: BLOCKDEV_TEST_SEED if set, else a fresh one; printed either way.</summary>
    public static int Seed(ITestOutputHelper output)
    {
        var env = Environment.GetEnvironmentVariable("BLOCKDEV_TEST_SEED");
        var seed = env is not null ? int.Parse(env, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        output.WriteLine($"seed {seed} (replay with BLOCKDEV_TEST_SEED={seed})");
        return seed;
    }

    public static string Sha256(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(f));
    }

    public static string Describe(IEnumerable<string> lines) => new StringBuilder().AppendJoin('\n', lines).ToString();
}
