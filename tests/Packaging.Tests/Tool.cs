using System.Diagnostics;

namespace Appliance.Packaging.Tests;

/// <summary>What a finished process printed.</summary>
public sealed record ToolResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout:\n{Stdout}\nstderr:\n{Stderr}";
}

/// <summary>Runs the programs the tests drive: the Debian tools, the package's scripts and the packaged program.</summary>
public static class Tool
{
    /// <summary>The repository root (the folder that holds Appliance.sln above the test binary).</summary>
    public static string RepoRoot { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Appliance.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no Appliance.sln above {AppContext.BaseDirectory}; run the tests from the repository");
    }

    /// <summary>Fails, naming the Debian package to install, when <paramref name="program"/> is not on PATH.</summary>
    public static void Require(string program, string debianPackage)
    {
        var found = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(d => File.Exists(Path.Combine(d, program)));
        Assert.True(found, $"{program} is not installed: install the Debian package {debianPackage} (scripts/test-packages.txt; scripts/test.sh installs it)");
    }

    public static ToolResult Run(string program, IEnumerable<string> args, TimeSpan timeout, string? workDir = null, IDictionary<string, string?>? env = null)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            WorkingDirectory = workDir ?? RepoRoot,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        // A dotnet started from the test host must not inherit the host's MSBuild settings.
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            psi.Environment.Remove(key);
        }
        foreach (var (k, v) in env ?? new Dictionary<string, string?>())
        {
            psi.Environment[k] = v;
        }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {program}");
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            // Ours, started here: ended by its own pid (and its children with it).
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish within {timeout}; stderr so far:\n{stderr.Result}");
        }
        return new ToolResult(p.ExitCode, stdout.Result, stderr.Result);
    }

    public static ToolResult Run(string program, params string[] args) => Run(program, args, TimeSpan.FromMinutes(2));

    /// <summary>Runs and asserts exit 0, returning standard output.</summary>
    public static string Ok(string program, params string[] args)
    {
        var r = Run(program, args);
        Assert.True(r.ExitCode == 0, $"{program} {string.Join(' ', args)}: {r}");
        return r.Stdout;
    }
}
