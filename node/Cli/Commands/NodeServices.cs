using System.Diagnostics;
using System.Globalization;
using Appliance.Cli.Common;

namespace Appliance.Cli.Commands;

/// <summary>
/// How a node's daemons are started and stopped: through systemd (`appliance-mon@NAME`, `appliance-osd@ID`, the
/// units of packaging/) when PID 1 is systemd and the node uses the packaged locations (/etc/appliance,
/// /var/lib/appliance: the units know no other), otherwise as background processes of this program with pid files
/// and logs under the data directory, exactly as `cluster up` runs them (<see cref="LocalDaemons"/>).
/// </summary>
internal sealed class NodeServices(LocalDaemons local)
{
    public const string DefaultConfDir = "/etc/appliance";
    public const string DefaultDataDir = "/var/lib/appliance";

    public LocalDaemons Local { get; } = local;

    /// <summary>PID 1 is systemd (/proc/1/comm).</summary>
    public static bool SystemdIsInit()
    {
        try
        {
            return File.ReadAllText("/proc/1/comm").Trim() == "systemd";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Whether this node's daemons run as systemd units.</summary>
    public bool UsesSystemd { get; } = SystemdIsInit()
        && Path.GetFullPath(local.ConfDirectory) == DefaultConfDir && Path.GetFullPath(local.DataDirectory) == DefaultDataDir;

    /// <summary>This node's settings (CONF_DIR/node.conf) when `bootstrap` or `join` made it.</summary>
    public NodeConf? Node { get; } = NodeConf.Load(local.ConfDirectory);

    /// <summary>The node's name: its CRUSH host.</summary>
    public string NodeName => Node?.Name ?? NodeConf.DefaultName();

    /// <summary>OSD <paramref name="id"/> of this node: on the node's address when it has one (else loopback).</summary>
    public LocalDaemon Osd(int id) => Local.Osd(id, NodeName, Node?.Address);

    /// <summary>Starts <paramref name="daemon"/> (unit <paramref name="unit"/> under systemd) unless it runs; says what
    /// happened.</summary>
    public async Task<string> StartAsync(LocalDaemon daemon, string unit, CancellationToken ct)
    {
        if (UsesSystemd)
        {
            await SystemctlAsync(ct, "enable", "--now", unit);
            return $"{daemon.Name} started by systemd ({unit})";
        }
        Directory.CreateDirectory(Local.RunDirectory);
        Directory.CreateDirectory(Local.LogDirectory);
        if (Local.RunningPid(daemon) is { } running)
        {
            return $"{daemon.Name} is running (pid {running})";
        }
        var pid = Local.Start(daemon);
        return $"{daemon.Name} started (pid {pid}, log {Local.LogFile(daemon.Name)})";
    }

    public async Task<string> StopAsync(LocalDaemon daemon, string unit, CancellationToken ct)
    {
        if (UsesSystemd)
        {
            await SystemctlAsync(ct, "disable", "--now", unit);
            return $"{daemon.Name} stopped ({unit} disabled)";
        }
        return await Local.StopAsync(daemon, TimeSpan.FromSeconds(15), ct);
    }

    /// <summary>Whether the daemon's process is gone: its pid file names no process, or a zombie. (Not by its command
    /// line: until it execs, a process just started is still setsid or sh.) Never true under systemd, which restarts
    /// it.</summary>
    public bool Exited(LocalDaemon daemon)
    {
        if (UsesSystemd)
        {
            return false;
        }
        try
        {
            var pid = File.ReadAllText(Local.PidFile(daemon.Name)).Trim();
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // "PID (COMM) STATE ...": the state follows the last ')'.
            return stat[(stat.LastIndexOf(')') + 1)..].TrimStart().StartsWith('Z');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return true;
        }
    }

    public static string OsdUnit(int id) => $"appliance-osd@{id.ToString(CultureInfo.InvariantCulture)}.service";

    public static string MonUnit(string name) => $"appliance-mon@{name}.service";

    internal static async Task SystemctlAsync(CancellationToken ct, params string[] args)
    {
        var psi = new ProcessStartInfo("systemctl") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi) ?? throw new CliException(ExitCodes.Failure, "could not run systemctl");
        var err = p.StandardError.ReadToEndAsync(ct);
        await p.StandardOutput.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        if (p.ExitCode != 0)
        {
            throw new CliException(ExitCodes.Failure, $"systemctl {string.Join(' ', args)} failed ({p.ExitCode}): {(await err).Trim()}; see `journalctl -u {args[^1]}`");
        }
    }
}
