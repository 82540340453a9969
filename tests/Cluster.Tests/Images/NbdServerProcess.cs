using System.Diagnostics;
using System.Text;
using Appliance.Cli;
using Appliance.Platform.Native;

namespace Appliance.Cluster.Tests.Images;

/// <summary>A local cluster for the image tests: 1 GiB sparse disks (the images' data lands there).</summary>
public sealed class ImageCluster : LocalCluster
{
    protected override string DiskSize => "1G";
}

/// <summary>
/// `appliance nbd serve` of a <see cref="LocalCluster"/> as a process of its own, on a unix socket: started, stopped
/// with SIGKILL or SIGSTOP/SIGCONT by its pid (<see cref="StopAsync"/> returns once it is stopped), and killed by
/// its pid when disposed. Its output is kept for messages.
/// </summary>
public sealed class NbdServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource _serving = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private NbdServerProcess(Process process, string socket)
    {
        _process = process;
        Socket = socket;
    }

    public string Socket { get; }

    public int Pid => _process.Id;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>The URI of an export for libnbd tools.</summary>
    public string Uri(string export) => $"nbd+unix:///{export}?socket={Socket}";

    /// <summary>Starts a server on <paramref name="socket"/> with a lease of <paramref name="leaseSeconds"/>; returns
    /// once it says it is serving.</summary>
    public static async Task<NbdServerProcess> StartAsync(LocalCluster cluster, string socket, int leaseSeconds, params string[] extra)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[typeof(CliApp).Assembly.Location, "nbd", "serve", "--conf-dir", cluster.ConfDir, "--unix", socket,
            "--lease", leaseSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture), .. extra])
        {
            psi.ArgumentList.Add(a);
        }
        var p = Process.Start(psi)!;
        var server = new NbdServerProcess(p, socket);
        void Line(string? line)
        {
            if (line is null)
            {
                return;
            }
            lock (server._output)
            {
                server._output.AppendLine(line);
            }
            if (line.Contains("serving", StringComparison.Ordinal))
            {
                server._serving.TrySetResult();
            }
        }
        p.OutputDataReceived += (_, e) => Line(e.Data);
        p.ErrorDataReceived += (_, e) => Line(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        var exited = p.WaitForExitAsync();
        var first = await Task.WhenAny(server._serving.Task, exited, Task.Delay(TimeSpan.FromSeconds(60)));
        if (first != server._serving.Task)
        {
            await server.DisposeAsync();
            Assert.Fail($"nbd serve did not start serving:\n{server.Output}");
        }
        return server;
    }

    public void Signal(int signal) => Assert.True(Posix.kill(Pid, signal), $"kill -{signal} {Pid} (nbd serve) failed");

    /// <summary>SIGSTOP, and returns once every thread of the process is stopped. kill(2) returns before that: the
    /// signal goes to one thread, which stops the others only when it next runs (on a busy machine, a while later),
    /// and meanwhile they go on: the one reading a client's socket may still take a request and carry it out.</summary>
    public async Task StopAsync()
    {
        Signal(Posix.SIGSTOP);
        await Poll.UntilAsync(() => Threads().All(t => t.State is 'T' or 't' or 'X' or 'Z'), TimeSpan.FromSeconds(30),
            $"every thread of nbd serve (pid {Pid}) to stop after SIGSTOP", ThreadStates);
    }

    /// <summary>Each thread as tid:state (/proc/PID/task/*/stat; T once stopped).</summary>
    private string ThreadStates() => string.Join(" ", Threads().Select(t => $"{t.Tid}:{t.State}"));

    private IEnumerable<(string Tid, char State)> Threads()
    {
        foreach (var task in Directory.EnumerateDirectories($"/proc/{Pid}/task"))
        {
            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(task, "stat"));
            }
            catch (IOException)
            {
                continue; // the thread ended meanwhile
            }
            // "tid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ')'.
            yield return (Path.GetFileName(task), stat[stat.LastIndexOf(')') + 2]);
        }
    }

    /// <summary>SIGKILL, and wait until the process is gone.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            Posix.kill(Pid, Posix.SIGKILL);
        }
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Posix.kill(Pid, Posix.SIGCONT);
            Posix.kill(Pid, Posix.SIGKILL);
        }
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
