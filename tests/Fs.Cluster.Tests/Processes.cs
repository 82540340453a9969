using System.Diagnostics;
using Appliance.Platform.Native;

namespace Appliance.Fs.Cluster.Tests;

/// <summary>
/// `appliance fs mount --foreground` of the built program, as a process of its own (its id, its lease, its locks),
/// against the fixture's cluster. Dispose ends it with SIGTERM (an orderly unmount) when it still runs, kills it by
/// its pid if it does not end, detaches a mount it left behind, and removes the directory.
/// </summary>
public sealed class MountProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];

    private MountProcess(string path, Process process)
    {
        Path = path;
        _process = process;
    }

    public string Path { get; }

    public int Pid => _process.Id;

    public string P(string relative) => System.IO.Path.Combine(Path, relative);

    /// <summary>What the mount printed (for a failing test's message).</summary>
    public string Output
    {
        get
        {
            lock (_lines)
            {
                return string.Join("\n", _lines);
            }
        }
    }

    public static async Task<MountProcess> StartAsync(string confDir, string fsName, double leaseSeconds)
    {
        var path = ClusterMount.NewDirectory("proc");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in (string[])[System.IO.Path.Combine(AppContext.BaseDirectory, "appliance.dll"), "fs", "mount", fsName, path, "--foreground",
                     "--conf-dir", confDir, "-o", $"lease={leaseSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)}"])
        {
            psi.ArgumentList.Add(a);
        }
        var m = new MountProcess(path, Process.Start(psi)!);
        var mounted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnLine(object _, DataReceivedEventArgs e)
        {
            if (e.Data is null)
            {
                return;
            }
            lock (m._lines)
            {
                m._lines.Add(e.Data);
            }
            if (e.Data.StartsWith($"mounted {fsName} at ", StringComparison.Ordinal))
            {
                mounted.TrySetResult();
            }
        }
        m._process.OutputDataReceived += OnLine;
        m._process.ErrorDataReceived += OnLine;
        m._process.BeginOutputReadLine();
        m._process.BeginErrorReadLine();
        var ended = m._process.WaitForExitAsync();
        if (await Task.WhenAny(mounted.Task, ended, Task.Delay(TimeSpan.FromSeconds(60))) != mounted.Task)
        {
            await m.DisposeAsync();
            Assert.Fail($"fs mount {fsName} did not mount:\n{m.Output}");
        }
        return m;
    }

    /// <summary>SIGKILL: no unmount, no release of anything; the kernel ends the FUSE connection.</summary>
    public async Task KillAsync()
    {
        Posix.kill(_process.Id, 9);
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Posix.kill(_process.Id, 15);
            using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            try
            {
                await _process.WaitForExitAsync(bound.Token);
            }
            catch (OperationCanceledException)
            {
                Posix.kill(_process.Id, 9);
                await _process.WaitForExitAsync();
            }
        }
        ClusterMount.DetachAndRemove(Path);
        _process.Dispose();
    }
}

/// <summary>
/// tests/Fs.Locker (`appliance-locker FILE`): a process that holds FILE open and takes fcntl and flock locks as told,
/// one answer a line. Locks belong to processes (POSIX) or open files (flock), so each contender is one of these.
/// </summary>
public sealed class Locker : IAsyncDisposable
{
    private readonly Process _process;

    private Locker(Process process, int pid)
    {
        _process = process;
        Pid = pid;
    }

    public int Pid { get; }

    public static async Task<Locker> StartAsync(string file)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardInput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "appliance-locker.dll"));
        psi.ArgumentList.Add(file);
        var p = Process.Start(psi)!;
        var first = await ReadLineAsync(p);
        if (first?.StartsWith("ready ", StringComparison.Ordinal) != true)
        {
            var error = await p.StandardError.ReadToEndAsync();
            Assert.Fail($"appliance-locker {file}: {first} {error}");
        }
        return new Locker(p, int.Parse(first[6..], System.Globalization.CultureInfo.InvariantCulture));
    }

    private static async Task<string?> ReadLineAsync(Process p)
    {
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        return await p.StandardOutput.ReadLineAsync(bound.Token);
    }

    /// <summary>Sends a command and returns its answer (bounded: 60 s).</summary>
    public async Task<string> AskAsync(string command)
    {
        await _process.StandardInput.WriteLineAsync(command);
        await _process.StandardInput.FlushAsync();
        return await ReadLineAsync(_process) ?? "eof";
    }

    /// <summary>Sends a command whose answer comes later (F_SETLKW); await the task for it (unbounded: the caller
    /// bounds its wait).</summary>
    public async Task<Task<string?>> SendAsync(string command)
    {
        await _process.StandardInput.WriteLineAsync(command);
        await _process.StandardInput.FlushAsync();
        return _process.StandardOutput.ReadLineAsync();
    }

    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            Posix.kill(_process.Id, 9);
        }
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }
}

/// <summary>util-linux's flock(1), the tool people lock files with in scripts.</summary>
public static class FlockTool
{
    /// <summary>Runs `flock ARGS FILE true` and returns its exit code (bounded: 60 s).</summary>
    public static async Task<int> RunAsync(string file, params string[] args)
    {
        var psi = new ProcessStartInfo("flock") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.ArgumentList.Add(file);
        psi.ArgumentList.Add("true");
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("flock (package util-linux) is missing");
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await p.WaitForExitAsync(bound.Token);
        }
        catch (OperationCanceledException)
        {
            Posix.kill(p.Id, 9);
            throw new TimeoutException($"flock {string.Join(' ', args)} {file} did not end within 60 s");
        }
        return p.ExitCode;
    }
}
