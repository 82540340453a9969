using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Appliance.Platform.Native;
using Xunit.Abstractions;

namespace Appliance.Cli.Tests.Disks;

/// <summary>
/// One test "node": its own configuration and data directories under a temporary directory, the `appliance`
/// commands run in this process as a user runs them (with --conf-dir and --data), and at the end every daemon they
/// started (pid files in DATA/run) killed by its pid when its command line names this node's directory.
/// </summary>
internal sealed class TestNode(TempDir dir, string name, ITestOutputHelper output) : IDisposable
{
    public string Name { get; } = name;
    public string ConfDir => Path.Combine(dir.Path, Name, "conf");
    public string DataDir => Path.Combine(dir.Path, Name, "data");

    public async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        // The node commands know its data directory; the monitors' commands only its configuration.
        string[] data = args[0] is "bootstrap" or "disk" or "node" or "join" ? ["--data", DataDir] : [];
        var code = await CliApp.RunAsync([.. args, "--conf-dir", ConfDir, .. data], o, e);
        output.WriteLine($"[{Name}] appliance {string.Join(' ', args)} -> {code}\n{o}{e}".TrimEnd());
        return (code, o.ToString(), e.ToString());
    }

    public async Task<string> OkAsync(params string[] args)
    {
        var (code, stdout, stderr) = await RunAsync(args);
        Assert.True(code == 0, $"appliance {string.Join(' ', args)} exited {code}: {stderr}\n{stdout}\n{Logs()}");
        return stdout;
    }

    /// <summary>Runs a command that must be refused (exit 6); returns its message.</summary>
    public async Task<string> RefusedAsync(params string[] args)
    {
        var (code, stdout, stderr) = await RunAsync(args);
        Assert.True(code == 6, $"appliance {string.Join(' ', args)} exited {code}, not 6 (refused): {stderr}\n{stdout}");
        return stderr;
    }

    public string Logs()
    {
        var log = Path.Combine(DataDir, "log");
        return Directory.Exists(log)
            ? string.Join("\n", Directory.GetFiles(log).Order(StringComparer.Ordinal).Select(f => $"== {f}\n{string.Join("\n", File.ReadLines(f).TakeLast(20))}"))
            : "(no logs)";
    }

    /// <summary>The pids in DATA/run whose process runs this program on this node's directories.</summary>
    public IEnumerable<int> DaemonPids()
    {
        var run = Path.Combine(DataDir, "run");
        if (!Directory.Exists(run))
        {
            yield break;
        }
        foreach (var file in Directory.GetFiles(run, "*.pid"))
        {
            if (int.TryParse(File.ReadAllText(file).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && IsOurs(pid))
            {
                yield return pid;
            }
        }
    }

    public bool IsOurs(int pid)
    {
        try
        {
            var cmdline = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/cmdline");
            return cmdline.Contains("appliance", StringComparison.Ordinal) && cmdline.Contains(Path.Combine(dir.Path, Name), StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }

    public static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    public void Dispose()
    {
        foreach (var pid in DaemonPids().ToList())
        {
            Posix.kill(pid, Posix.SIGKILL);
        }
    }
}
