using System.Diagnostics;
using System.Globalization;
using Appliance.Cli.Common;
using Appliance.Platform.Native;

namespace Appliance.Cli.Commands;

/// <summary>One daemon of a local cluster: its name (mon.a, osd.0), the arguments after the program, and the
/// argument that tells it apart from every other process (its data path).</summary>
internal sealed record LocalDaemon(string Name, IReadOnlyList<string> Args, string Identity);

/// <summary>
/// The daemons `cluster up` runs on this machine from one data directory: each is this same program
/// (`appliance mon run …`, `appliance osd run …`) detached in a session of its own, its output appended to
/// DIR/log/NAME.log and its pid in DIR/run/NAME.pid. A pid file is trusted only while /proc/PID/cmdline is this
/// program running that daemon: a pid file whose process is gone, or whose pid now belongs to something else, is
/// stale. A node made by `appliance bootstrap`/`join` keeps its configuration elsewhere (/etc/appliance):
/// <paramref name="confDirectory"/>; `cluster up` keeps it in DIR/conf.
/// </summary>
internal sealed class LocalDaemons(string dataDirectory, string? confDirectory = null)
{
    public string DataDirectory { get; } = dataDirectory;
    public string RunDirectory => Path.Combine(DataDirectory, "run");
    public string LogDirectory => Path.Combine(DataDirectory, "log");
    public string ConfDirectory { get; } = confDirectory ?? Path.Combine(dataDirectory, "conf");

    public string PidFile(string name) => Path.Combine(RunDirectory, name + ".pid");
    public string LogFile(string name) => Path.Combine(LogDirectory, name + ".log");
    public string MonitorData(string name) => Path.Combine(DataDirectory, "mon." + name);
    public string OsdDisk(int id) => Path.Combine(DataDirectory, $"osd.{id.ToString(CultureInfo.InvariantCulture)}.disk");

    public LocalDaemon Monitor(string name) => new($"mon.{name}",
        ["mon", "run", "--name", name, "--data", MonitorData(name), "--conf-dir", ConfDirectory], MonitorData(name));

    /// <summary>Each local OSD is its own CRUSH host (local-osdN): the monitors' replicated rule separates copies
    /// by host, so this puts every copy on a distinct OSD of this one machine.</summary>
    public LocalDaemon Osd(int id) => Osd(id, $"local-osd{id.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>OSD <paramref name="id"/> on DIR/osd.N.disk (the disk itself, or a symlink to the device `disk add`
    /// gave it) as part of CRUSH host <paramref name="host"/>, listening on <paramref name="address"/> (a free port;
    /// loopback when null).</summary>
    public LocalDaemon Osd(int id, string host, string? address = null)
    {
        var n = id.ToString(CultureInfo.InvariantCulture);
        string[] listen = address is null ? [] : ["--addr", address];
        return new($"osd.{n}", ["osd", "run", n, "--data", OsdDisk(id), "--host", host, .. listen, "--conf-dir", ConfDirectory], OsdDisk(id));
    }

    /// <summary>The NBD server of the local cluster: every image of the cluster on DIR/run/nbd.sock and on
    /// <paramref name="listen"/> (a loopback address chosen the first time, kept in CONF/nbd.listen).</summary>
    public LocalDaemon Nbd(string listen) => new("nbd",
        ["nbd", "serve", "--conf-dir", ConfDirectory, "--unix", NbdSocket, "--listen", listen], NbdSocket);

    public string NbdSocket => Path.Combine(RunDirectory, "nbd.sock");

    /// <summary>Where the local cluster mounts filesystem <paramref name="name"/>: DIR/mnt/NAME.</summary>
    public string MountPoint(string name) => Path.Combine(DataDirectory, "mnt", name);

    /// <summary>The FUSE mount of filesystem <paramref name="name"/> at <see cref="MountPoint"/>, served by `fs mount
    /// --foreground` (SIGTERM unmounts it and ends the process).</summary>
    public LocalDaemon Fs(string name) => new($"fs.{name}",
        ["fs", "mount", name, MountPoint(name), "--foreground", "--conf-dir", ConfDirectory], MountPoint(name));

    public string NbdListenFile => Path.Combine(ConfDirectory, "nbd.listen");

    /// <summary>The OSDs this directory holds: DIR/osd.N.disk with its keyring CONF/osd.N.keyring.</summary>
    public IReadOnlyList<int> OsdIds()
    {
        var ids = new List<int>();
        if (!Directory.Exists(DataDirectory))
        {
            return ids;
        }
        // EnumerateFileSystemEntries: `disk add` links DIR/osd.N.disk to a block device.
        foreach (var path in Directory.EnumerateFileSystemEntries(DataDirectory, "osd.*.disk"))
        {
            var middle = Path.GetFileName(path)["osd.".Length..^".disk".Length];
            if (int.TryParse(middle, NumberStyles.None, CultureInfo.InvariantCulture, out var id)
                && File.Exists(Path.Combine(ConfDirectory, $"osd.{middle}.keyring")))
            {
                ids.Add(id);
            }
        }
        ids.Sort();
        return ids;
    }

    /// <summary>The daemons with a pid file in DIR/run: mounts first (they unregister from their filesystem), the NBD
    /// server (it gives its image locks back), then OSDs (they tell the monitors they stop), then monitors.</summary>
    public IReadOnlyList<LocalDaemon> FromPidFiles()
    {
        if (!Directory.Exists(RunDirectory))
        {
            return [];
        }
        var names = Directory.EnumerateFiles(RunDirectory, "*.pid").Select(f => Path.GetFileNameWithoutExtension(f)).ToList();
        var osds = names.Where(n => n.StartsWith("osd.", StringComparison.Ordinal))
            .Select(n => int.TryParse(n[4..], NumberStyles.None, CultureInfo.InvariantCulture, out var id) ? id : -1)
            .Where(id => id >= 0).Order().Select(Osd);
        var mons = names.Where(n => n.StartsWith("mon.", StringComparison.Ordinal) && n.Length > 4).Order(StringComparer.Ordinal)
            .Select(n => Monitor(n[4..]));
        var nbd = names.Contains("nbd") && File.Exists(NbdListenFile) ? [Nbd(File.ReadAllText(NbdListenFile).Trim())] : Array.Empty<LocalDaemon>();
        var mounts = names.Where(n => n.StartsWith("fs.", StringComparison.Ordinal) && n.Length > 3).Order(StringComparer.Ordinal)
            .Select(n => Fs(n[3..]));
        return [.. mounts, .. nbd, .. osds, .. mons];
    }

    /// <summary>The pid of <paramref name="daemon"/> when its pid file names a live process of ours running it.</summary>
    public int? RunningPid(LocalDaemon daemon)
    {
        string text;
        try
        {
            text = File.ReadAllText(PidFile(daemon.Name)).Trim();
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid > 0 && IsRunning(pid, daemon) ? pid : null;
    }

    /// <summary>Whether process <paramref name="pid"/> is this program running <paramref name="daemon"/>. A zombie
    /// has an empty cmdline, so it counts as gone.</summary>
    public static bool IsRunning(int pid, LocalDaemon daemon)
    {
        string[] args;
        try
        {
            args = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
        // `appliance …` (the apphost) or `dotnet …/appliance.dll …`: the program is one of the first two words.
        var ours = args.Take(2).Any(a => Path.GetFileName(a) is "appliance" or "appliance.dll");
        return ours && (args.Contains("run") || args.Contains("serve") || args.Contains("mount")) && args.Contains(daemon.Identity);
    }

    /// <summary>How to start this same program: its apphost, or `dotnet appliance.dll` when run that way.</summary>
    private static IReadOnlyList<string> Program()
    {
        var process = Environment.ProcessPath ?? "dotnet";
        if (Path.GetFileName(process) == "appliance")
        {
            return [process];
        }
        var muxer = Path.GetFileNameWithoutExtension(process) == "dotnet" ? process : "dotnet";
        // AppContext.BaseDirectory, not Assembly.Location: the latter is empty in a single-file publish (packaging/).
        return [muxer, Path.Combine(AppContext.BaseDirectory, "appliance.dll")];
    }

    /// <summary>
    /// Starts <paramref name="daemon"/> in the background and writes its pid file; returns the pid. setsid(1) puts
    /// it in a session of its own, so it outlives this command and a Ctrl-C in this terminal; sh points its
    /// stdin at /dev/null and its output at its log before exec, so it holds none of our descriptors (a caller
    /// reading our stdout through a pipe still sees it close). Both exec in place: the pid we get is the daemon's.
    /// </summary>
    public int Start(LocalDaemon daemon)
    {
        var psi = new ProcessStartInfo("setsid") { UseShellExecute = false };
        foreach (var a in (string[])["sh", "-c", "log=$1; shift; exec \"$@\" </dev/null >>\"$log\" 2>&1", "sh", LogFile(daemon.Name), .. Program(), .. daemon.Args])
        {
            psi.ArgumentList.Add(a);
        }
        int pid;
        try
        {
            using var p = Process.Start(psi) ?? throw new CliException(ExitCodes.Failure, $"could not start {daemon.Name}");
            pid = p.Id;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new CliException(ExitCodes.Failure, $"could not start {daemon.Name}: {e.Message} (setsid and sh come with util-linux and dash; install them)");
        }
        var file = PidFile(daemon.Name);
        File.WriteAllText(file + ".tmp", pid.ToString(CultureInfo.InvariantCulture) + "\n");
        File.Move(file + ".tmp", file, overwrite: true);
        return pid;
    }

    /// <summary>
    /// Stops <paramref name="daemon"/> if its pid file names a live process of ours: SIGTERM, up to
    /// <paramref name="grace"/> for it to exit, then SIGKILL and up to 5 s more. Removes the pid file. Returns what
    /// happened, for the user.
    /// </summary>
    public async Task<string> StopAsync(LocalDaemon daemon, TimeSpan grace, CancellationToken ct)
    {
        var pid = RunningPid(daemon);
        if (pid is not { } p)
        {
            File.Delete(PidFile(daemon.Name));
            return $"{daemon.Name} was not running";
        }
        Posix.kill(p, Posix.SIGTERM);
        var said = $"{daemon.Name} (pid {p}) stopped";
        if (!await ExitedAsync(p, daemon, grace, ct))
        {
            Posix.kill(p, Posix.SIGKILL);
            said = $"{daemon.Name} (pid {p}) did not stop within {grace.TotalSeconds:0} s of SIGTERM: killed";
            if (!await ExitedAsync(p, daemon, TimeSpan.FromSeconds(5), ct))
            {
                throw new CliException(ExitCodes.Failure, $"{daemon.Name} (pid {p}) is still there 5 s after SIGKILL (stuck in the kernel, in D state?); see `cat /proc/{p}/stack`");
            }
        }
        File.Delete(PidFile(daemon.Name));
        return said;
    }

    /// <summary>Waits up to <paramref name="bound"/> for the process to be gone. It is not our child (whoever started
    /// it has exited), so there is nothing to wait on: /proc is polled.</summary>
    private static async Task<bool> ExitedAsync(int pid, LocalDaemon daemon, TimeSpan bound, CancellationToken ct)
    {
        var until = Stopwatch.GetTimestamp() + (long)(bound.TotalSeconds * Stopwatch.Frequency);
        while (IsRunning(pid, daemon))
        {
            if (Stopwatch.GetTimestamp() > until)
            {
                return false;
            }
            await Task.Delay(50, ct);
        }
        return true;
    }

    /// <summary>Whether something is mounted at <paramref name="path"/> (as /proc/self/mountinfo lists it).</summary>
    public static bool IsMounted(string path) =>
        File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ') is { Length: > 4 } f && f[4] == path);

    /// <summary>Detaches what is left mounted under DIR/mnt (a mount whose process was killed leaves a dead FUSE
    /// mount: every access fails with ENOTCONN until it is unmounted). Returns what it did, one line each.</summary>
    public IReadOnlyList<string> DetachStaleMounts()
    {
        var said = new List<string>();
        var mnt = Path.Combine(DataDirectory, "mnt");
        foreach (var line in File.ReadLines("/proc/self/mountinfo").ToList())
        {
            if (line.Split(' ') is { Length: > 4 } f && f[4].StartsWith(mnt + "/", StringComparison.Ordinal))
            {
                Appliance.Fs.Session.FuseMounter.Unmount(f[4], viaFusermount: !Appliance.Fs.Session.FuseMounter.IsRoot);
                said.Add($"{f[4]}: its mount process is gone; unmounted");
            }
        }
        return said;
    }

    /// <summary>The last lines of a daemon's log, for a message that says why it is not up.</summary>
    public string LogTail(string name, int lines = 8)
    {
        try
        {
            var tail = File.ReadLines(LogFile(name)).TakeLast(lines).ToList();
            return tail.Count == 0 ? "" : "\n    " + string.Join("\n    ", tail);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }
}
