using System.Diagnostics;
using System.Globalization;

namespace Appliance.Cluster.Tests.Netns;

/// <summary>
/// Runs the host's network tools (ip, nft) for the netns harness: each call is bounded, and a failure throws with the
/// command line and what it printed.
/// </summary>
public static class Host
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>Runs <paramref name="file"/> with <paramref name="args"/> (and <paramref name="stdin"/>), returning its exit
    /// code and stdout+stderr; killed (by its pid) past the bound.</summary>
    public static async Task<(int Code, string Output)> RunAsync(string file, IReadOnlyList<string> args, string? stdin = null)
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
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await p.StandardInput.WriteAsync(stdin);
            p.StandardInput.Close();
        }
        using var bound = new CancellationTokenSource(Bound);
        try
        {
            await p.WaitForExitAsync(bound.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill();
            await p.WaitForExitAsync();
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not return within {Bound.TotalSeconds:0} s");
        }
        return (p.ExitCode, await stdout + await stderr);
    }

    /// <summary>Runs a command that must succeed; returns its output.</summary>
    public static async Task<string> MustAsync(string file, IReadOnlyList<string> args, string? stdin = null)
    {
        var (code, output) = await RunAsync(file, args, stdin);
        if (code != 0)
        {
            throw new InvalidOperationException($"`{file} {string.Join(' ', args)}` exited {code.ToString(CultureInfo.InvariantCulture)}: {output.Trim()}" +
                (stdin is null ? "" : $"\ninput:\n{stdin}"));
        }
        return output;
    }

    public static Task<string> IpAsync(params string[] args) => MustAsync("ip", args);

    /// <summary>`ip netns exec NS FILE ARGS…`, which must succeed.</summary>
    public static Task<string> InAsync(string ns, string file, IReadOnlyList<string> args, string? stdin = null) =>
        MustAsync("ip", ["netns", "exec", ns, file, .. args], stdin);

    /// <summary>The names of the host's network namespaces (`ip netns list`).</summary>
    public static async Task<IReadOnlyList<string>> NamespacesAsync() =>
        [.. (await IpAsync("netns", "list")).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => l.Split(' ')[0])];

    /// <summary>The pids of the processes in namespace <paramref name="ns"/> (`ip netns pids`); none when it is gone.</summary>
    public static async Task<IReadOnlyList<int>> PidsInAsync(string ns)
    {
        var (code, output) = await RunAsync("ip", ["netns", "pids", ns]);
        return code != 0 ? [] : [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : 0).Where(p => p > 0)];
    }

    /// <summary>The names of the links of the root namespace (`ip -o link show`).</summary>
    public static async Task<IReadOnlyList<string>> LinksAsync() =>
        [.. (await IpAsync("-o", "link", "show")).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(':', 3)) .Where(f => f.Length >= 2).Select(f => f[1].Trim().Split('@')[0])];
}
