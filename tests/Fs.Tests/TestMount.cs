using System.Diagnostics;
using Appliance.Fs.Session;
using Appliance.Fs.TestFs;
using Appliance.Platform.Native;

namespace Appliance.Fs.Tests;

/// <summary>
/// The in-memory test filesystem mounted by the kernel at a fresh temporary directory, served in-process.
/// Dispose always unmounts (lazily if busy, aborting the connection if it does not end) and removes the directory,
/// also when the test failed.
/// </summary>
public sealed class TestMount : IAsyncDisposable
{
    private TestMount(string path, MemoryFileSystem fs, FuseSession session)
    {
        Path = path;
        Fs = fs;
        Session = session;
    }

    public string Path { get; }

    public MemoryFileSystem Fs { get; }

    public FuseSession Session { get; }

    public List<string> Log { get; } = [];

    public static TestMount Start(MemoryFileSystem? fs = null, FuseOptions? options = null)
    {
        var path = NewDirectory("mnt");
        fs ??= new MemoryFileSystem();
        var log = new List<string>();
        options = (options ?? new FuseOptions()) with { Log = line => { lock (log) { log.Add(line); } } };
        try
        {
            var session = FuseSession.Mount(fs, path, options);
            var mount = new TestMount(path, fs, session);
            mount.Log.AddRange(log);
            return mount;
        }
        catch
        {
            Directory.Delete(path);
            throw;
        }
    }

    /// <summary>A new empty directory on the local disk (ext4 here), for comparisons and mount points.</summary>
    public static string NewDirectory(string what)
    {
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"appliance-fs-{what}-{Guid.NewGuid().ToString("N")[..10]}");
        Directory.CreateDirectory(path);
        return path;
    }

    public string P(string relative) => System.IO.Path.Combine(Path, relative);

    public async ValueTask DisposeAsync()
    {
        await Session.DisposeAsync();
        if (IsMounted(Path))
        {
            try
            {
                Posix.umount2(Path, Constants.MNT_DETACH);
            }
            catch (PlatformException)
            {
                // nothing more we can do; the directory stays
            }
        }
        try
        {
            Directory.Delete(Path);
        }
        catch (IOException)
        {
        }
    }

    public static bool IsMounted(string path) =>
        File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ') is { Length: > 4 } f && f[4] == path);
}

/// <summary>Runs shell commands (ls, stat, setfattr, ...), optionally as the unprivileged user nobody.</summary>
public static class Shell
{
    public const uint Nobody = 65534;

    public static (int Exit, string Out, string Err) Run(string command, bool asNobody = false, int timeoutMs = 120_000)
    {
        var start = new ProcessStartInfo(asNobody ? "setpriv" : "sh")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (asNobody)
        {
            foreach (var a in new[] { "--reuid=65534", "--regid=65534", "--clear-groups", "sh" })
            {
                start.ArgumentList.Add(a);
            }
        }
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(command);
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"`{command}` did not finish within {timeoutMs} ms");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs a command that must succeed; returns its output.</summary>
    public static string Ok(string command, bool asNobody = false)
    {
        var (exit, stdout, stderr) = Run(command, asNobody);
        Assert.True(exit == 0, $"`{command}` exited {exit}: {stderr}");
        return stdout;
    }
}

/// <summary>Errno of a failed platform call, 0 if it succeeded.</summary>
public static class Errnos
{
    public static int Of(Action call)
    {
        try
        {
            call();
            return 0;
        }
        catch (PlatformException e)
        {
            return e.Errno;
        }
    }
}
