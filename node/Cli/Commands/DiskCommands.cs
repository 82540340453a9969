using System.CommandLine;
using System.Globalization;
using System.Text;
using Appliance.Cli.Common;
using Appliance.Cli.Disks;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Platform.Devices;

namespace Appliance.Cli.Commands;

/// <summary>
/// `disk add|ls|rm`: this node's disks as OSDs. `add` runs the preflight (<see cref="DiskProbe"/>,
/// <see cref="DiskPreflight"/>), creates the OSD as `osd create` does, links DATA/osd.N.disk to the disk and starts
/// the OSD (<see cref="NodeServices"/>); `rm` drains, stops and forgets one.
/// </summary>
public static class DiskCommands
{
    internal static readonly Option<string> DataDir = new("--data")
    {
        Description = "This node's data directory: run/ (pid files), log/, the OSDs' disk links osd.N.disk. Default: $APPLIANCE_DATA_DIR or /var/lib/appliance.",
        Recursive = true,
    };

    internal static string DataDirOf(ParseResult parse) =>
        Path.GetFullPath(parse.GetValue(DataDir) ?? Environment.GetEnvironmentVariable("APPLIANCE_DATA_DIR") ?? NodeServices.DefaultDataDir);

    internal static NodeServices ServicesOf(ParseResult parse) =>
        new(new LocalDaemons(DataDirOf(parse), Path.GetFullPath(MonitorCommands.ConfDirOf(parse))));

    public static Command Create()
    {
        var disk = new Command("disk", "This node's disks: each one an OSD of the cluster.");
        MonitorCommands.AddCommon(disk);
        disk.Options.Add(DataDir);
        disk.Subcommands.Add(Add());
        disk.Subcommands.Add(List());
        disk.Subcommands.Add(Remove());
        return disk;
    }

    private static Command Add()
    {
        var path = new Argument<string>("disk") { Description = "A block device (/dev/vdb, /dev/disk/by-id/...) or a file." };
        var wipe = new Option<bool>("--wipe") { Description = "Erase what the preflight found (a filesystem, a partition table, LVM, RAID, another cluster's store). Never allowed on a mounted disk or a running OSD." };
        var size = new Option<string>("--size") { Description = "Make a missing FILE this size (sparse), e.g. 8G." };
        var add = new Command("add", "Check a disk holds nothing (mounted, partition table, filesystem, LVM, RAID, another cluster's store: refused, naming what and where), then make it an OSD and start it.") { path, wipe, size };
        add.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            var disk = Path.GetFullPath(parse.GetRequiredValue(path));
            if (!File.Exists(disk))
            {
                if (parse.GetValue(size) is not { } sz || disk.StartsWith("/dev/", StringComparison.Ordinal))
                {
                    throw new CliException(ExitCodes.NotFound, $"{disk} does not exist; give a block device such as /dev/vdb, or a file (--size SIZE makes a missing one)");
                }
                var bytes = ByteSize.Parse(sz, "--size");
                Directory.CreateDirectory(Path.GetDirectoryName(disk)!);
                await using (FileDevice.CreateFile(disk, bytes))
                {
                }
                await output.WriteLineAsync($"{disk}: a sparse file of {ByteSize.Format(bytes)} made");
            }
            var conf = MonitorCommands.LoadConf(parse);
            var services = ServicesOf(parse);
            var local = services.Local;
            var probe = await DiskProbe.ProbeAsync(disk, conf.Fsid, ct);
            await using var client = MonitorCommands.Client(parse);
            var toWipe = await CheckAsync(probe, parse.GetValue(wipe), local, client, ct);
            if (toWipe.Count > 0)
            {
                await DiskProbe.WipeAsync(probe.Resolved, toWipe, ct);
                await output.WriteLineAsync($"{disk}: wiped {string.Join("; ", toWipe)}");
                var again = await DiskProbe.ProbeAsync(disk, conf.Fsid, ct);
                if (again.Findings.Count > 0)
                {
                    throw new CliException(ExitCodes.Failure, $"{disk} still holds {string.Join("; ", again.Findings)} after the wipe; erase it by hand (wipefs -a {disk})");
                }
            }

            var id = await OsdCommands.CreateOnAsync(client, conf, local.ConfDirectory, disk, wipe: false, ct);
            Directory.CreateDirectory(local.DataDirectory);
            var link = local.OsdDisk(id);
            if (link != disk)
            {
                File.Delete(link);
                File.CreateSymbolicLink(link, disk);
            }
            var daemon = services.Osd(id);
            await output.WriteLineAsync($"osd.{id} created on {disk} ({ByteSize.Format(probe.Size)}), host {services.NodeName}");
            await output.WriteLineAsync(await services.StartAsync(daemon, NodeServices.OsdUnit(id), ct));
            var info = await WaitUpAsync(client, services, daemon, id, MonitorCommands.TimeoutOf(parse), ct);
            await output.WriteLineAsync($"osd.{id} is up at {info.Address}");
            return ExitCodes.Ok;
        });
        return add;
    }

    /// <summary>
    /// Decides from the preflight's findings: what is in use refuses the disk whatever the flags; a store of this
    /// cluster whose OSD is still in the osdmap refuses it too ("already osd.N"); anything else is refused without
    /// --wipe, naming it, and is what --wipe zeroes (returned).
    /// </summary>
    private static async Task<List<DiskFinding>> CheckAsync(ProbeResult probe, bool wipe, LocalDaemons local, MonClient client, CancellationToken ct)
    {
        var disk = probe.Path;
        var inUse = probe.Findings.Where(f => f.Kind == FindingKind.InUse).ToList();
        if (inUse.Count > 0)
        {
            throw new CliException(ExitCodes.Refused, $"{disk} is {string.Join("; ", inUse)}; a disk in use is never added (--wipe does not apply)");
        }
        var toWipe = probe.Findings.Where(f => f.Kind == FindingKind.Signature).ToList();
        if (probe.Findings.FirstOrDefault(f => f.Kind == FindingKind.OwnStore) is { Store: { } own } found)
        {
            var map = await CurrentMapAsync(client, ct);
            var id = own.OsdId;
            if (map.FindOsd(id) is { } osd)
            {
                var state = probe.Locked ? "its daemon runs on this node" : osd.Up ? $"up at {osd.Address}" : "down";
                throw new CliException(ExitCodes.Refused,
                    $"{disk} is already osd.{id} of this cluster ({found.Where}; {state}, {(osd.In ? "in" : "out")}); nothing to add. `appliance disk rm {id}` drains and removes it (--wipe is not allowed on an OSD the cluster still has)");
            }
            // Its OSD was removed from the cluster: a leftover, like any other store.
            toWipe.Insert(0, found with { What = $"the store of osd.{id} of this cluster, which the osdmap no longer has" });
        }
        if (probe.Locked)
        {
            throw new CliException(ExitCodes.Refused, $"{disk} is locked by another process (a running OSD or a test of the store?); stop it first (--wipe does not apply)");
        }
        if (toWipe.Count > 0 && !wipe)
        {
            var what = string.Join("; ", toWipe);
            throw new CliException(ExitCodes.Refused, $"{disk} holds {what}; add --wipe to erase {(toWipe.Count == 1 ? "it" : "them")} (its data is lost)");
        }
        return toWipe;
    }

    /// <summary>Waits until the osdmap shows OSD <paramref name="id"/> up (or its process exited, or the bound ran out).</summary>
    private static async Task<OsdInfo> WaitUpAsync(MonClient client, NodeServices services, LocalDaemon daemon, int id, TimeSpan bound, CancellationToken ct)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(bound);
        var local = services.Local;
        OsdMap? last = null;
        try
        {
            await foreach (var map in client.WatchOsdMapAsync(null, wait.Token))
            {
                last = map;
                if (map.FindOsd(id) is { Up: true } info)
                {
                    return info;
                }
                if (services.Exited(daemon))
                {
                    throw new CliException(ExitCodes.Failure, $"osd.{id} exited; the end of its log {local.LogFile(daemon.Name)}:{local.LogTail(daemon.Name)}");
                }
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
        }
        catch (MonitorsUnavailableException e)
        {
            throw new CliException(ExitCodes.Failure, e.Message);
        }
        throw new CliException(ExitCodes.Failure,
            $"osd.{id} is not up after {bound.TotalSeconds:0} s (osdmap e{last?.Epoch}); see {(services.UsesSystemd ? $"journalctl -u {NodeServices.OsdUnit(id)}" : local.LogFile(daemon.Name))}{(services.UsesSystemd ? "" : local.LogTail(daemon.Name))}");
    }

    /// <summary>The monitors' current osdmap (the first answer of a subscription).</summary>
    internal static Task<OsdMap> CurrentMapAsync(MonClient client, CancellationToken ct) => FirstAsync(client.WatchOsdMapAsync(null, ct), "osdmap");

    /// <summary>The first map a subscription gives (the current one); the monitors' failure as the CLI reports it.</summary>
    internal static async Task<T> FirstAsync<T>(IAsyncEnumerable<T> maps, string what)
    {
        try
        {
            await foreach (var map in maps)
            {
                return map;
            }
        }
        catch (MonitorsUnavailableException e)
        {
            throw new CliException(ExitCodes.Failure, e.Message);
        }
        throw new CliException(ExitCodes.Failure, $"the monitors gave no {what}");
    }

    private static Command List()
    {
        var ls = new Command("ls", "This node's OSD disks: device, OSD, size, used (as the OSD reports it), state (process, up/down, in/out).");
        ls.SetAction(async (parse, ct) =>
        {
            var services = ServicesOf(parse);
            var local = services.Local;
            var ids = local.OsdIds();
            OsdMap? map = null;
            DfReport? df = null;
            var note = "";
            await using (var client = MonitorCommands.Client(parse))
            {
                try
                {
                    map = await CurrentMapAsync(client, ct);
                    df = await client.GetDfAsync(ct);
                }
                catch (Exception e) when (e is CliException or MonitorsUnavailableException or MonRequestFailedException)
                {
                    note = $"(the monitors did not answer: {e.Message}; up/in and used are unknown)";
                }
            }
            var rows = new List<string[]> { new[] { "DEVICE", "OSD", "SIZE", "USED", "STATE" } };
            foreach (var id in ids)
            {
                var link = local.OsdDisk(id);
                var device = new FileInfo(link).LinkTarget ?? link;
                var size = "-";
                try
                {
                    await using var dev = FileDevice.Open(link, new FileDeviceOptions { ReadOnly = true, Exclusive = false, QueueDepth = 1 });
                    size = ByteSize.Format(dev.Size);
                }
                catch (IOException)
                {
                    size = "missing";
                }
                var usage = df?.Osds.FirstOrDefault(o => o.Osd == id);
                var used = usage is null ? "-" : ByteSize.Format((long)usage.UsedBytes);
                var daemon = local.Osd(id);
                var state = new List<string> { services.UsesSystemd ? $"systemd {NodeServices.OsdUnit(id)}" : local.RunningPid(daemon) is { } pid ? $"running (pid {pid})" : "not running" };
                if (map is not null)
                {
                    state.Add(map.FindOsd(id) is { } o ? $"{(o.Up ? "up" : "down")} {(o.In ? "in" : "out")}" : "not in the osdmap");
                }
                rows.Add([device, $"osd.{id}", size, used, string.Join(", ", state)]);
            }
            var widths = Enumerable.Range(0, 4).Select(c => rows.Max(r => r[c].Length)).ToArray();
            var text = new StringBuilder();
            foreach (var r in rows)
            {
                text.AppendLine(string.Join("  ", r.Select((cell, c) => c < 4 ? cell.PadRight(widths[c]) : cell)));
            }
            if (note.Length > 0)
            {
                text.AppendLine(note);
            }
            await parse.InvocationConfiguration.Output.WriteAsync(text.ToString());
            return ExitCodes.Ok;
        });
        return ls;
    }

    private static Command Remove()
    {
        var which = new Argument<string>("osd") { Description = "The OSD (3 or osd.3) or its disk (/dev/vdb, or the file)." };
        var force = new Option<bool>("--force") { Description = "Do not wait for its PGs to move elsewhere (data whose only copies are on it is lost)." };
        var drainTimeout = new Option<double>("--drain-timeout") { Description = "Seconds to wait for its PGs to move elsewhere before giving up. Default 3600.", DefaultValueFactory = _ => 3600 };
        var rm = new Command("rm", "Take an OSD of this node out of the cluster: mark it out, wait until no PG maps to it (unless --force), stop it, remove its key, and free its disk (its store's superblocks zeroed).") { which, force, drainTimeout };
        rm.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            var services = ServicesOf(parse);
            var local = services.Local;
            var id = ResolveOsd(local, parse.GetRequiredValue(which));
            var link = local.OsdDisk(id);
            var device = new FileInfo(link).LinkTarget ?? link;
            await using var client = MonitorCommands.Client(parse);
            var map = await CurrentMapAsync(client, ct);
            if (map.FindOsd(id) is { In: true })
            {
                await MustAsync(client.CommandAsync(new OsdOut([id]), ct), $"mark osd.{id} out");
                await output.WriteLineAsync($"osd.{id} marked out: its PGs move to other OSDs");
            }
            var drained = false;
            if (!parse.GetValue(force))
            {
                await DrainAsync(client, id, TimeSpan.FromSeconds(parse.GetValue(drainTimeout)), output, ct);
                drained = true;
            }
            await output.WriteLineAsync(await services.StopAsync(local.Osd(id), NodeServices.OsdUnit(id), ct));
            var removed = await RemoveFromMapAsync(client, id, TimeSpan.FromSeconds(drained ? 60 : 10), ct);
            if (removed is not null)
            {
                // Not removable yet (--force on an OSD a placement still names): its key goes at least, so it cannot
                // come back; `osd rm` finishes the job once its PGs have moved.
                var auth = await client.CommandAsync(new AuthRemove($"osd.{id}"), ct);
                if (auth.Status != MonReplyStatus.Ok && !(auth.Status == MonReplyStatus.Failed && auth.Code == (int)MonErrorCode.NotFound))
                {
                    throw new CliException(ExitCodes.Failure, $"osd.{id} is stopped but the monitors did not remove its key: {auth.Message.Trim()}; run `appliance auth rm osd.{id}`");
                }
            }
            if (drained && File.Exists(link))
            {
                // Nothing of it is needed any more: the disk is free to add again without --wipe.
                await DiskProbe.WipeAsync(link, [new DiskFinding(FindingKind.Signature, "the store's superblocks", "", [new ByteRange(0, 8192)])], ct);
            }
            File.Delete(Appliance.Osd.Daemon.OsdDaemon.KeyringPath(local.ConfDirectory, id));
            File.Delete(link);
            var fate = removed is null ? $"removed from the osdmap and CRUSH" : $"its key removed; the osdmap keeps it down and out ({removed}): run `appliance osd rm {id}` once its PGs are active+clean elsewhere";
            await output.WriteLineAsync(drained
                ? $"osd.{id} removed: stopped, {fate}; {device} free (its store's superblocks zeroed)"
                : $"osd.{id} removed without draining: stopped, {fate}; {device} keeps its store (add it again with --wipe)");
            return ExitCodes.Ok;
        });
        return rm;
    }

    /// <summary>
    /// `osd rm` of a stopped OSD: waits until the osdmap shows it down (a stopping OSD tells the monitors at once; one
    /// that could not is marked down by its peers), then removes it from the osdmap, CRUSH and the auth database,
    /// trying again while the leader refuses because PGs are still settling (not active+clean, or a placement still
    /// naming it). Returns null when removed, else why not (after <paramref name="bound"/>).
    /// </summary>
    internal static async Task<string?> RemoveFromMapAsync(MonClient client, int id, TimeSpan bound, CancellationToken ct)
    {
        var until = DateTime.UtcNow + bound;
        var why = "";
        while (true)
        {
            var map = await CurrentMapAsync(client, ct);
            if (map.FindOsd(id) is not { } osd)
            {
                return null;
            }
            if (osd.Up)
            {
                why = $"osd.{id} is still up in osdmap e{map.Epoch}";
            }
            else
            {
                MonReply reply;
                try
                {
                    reply = await client.CommandAsync(new OsdRemove([id]), ct);
                }
                catch (MonitorsUnavailableException e)
                {
                    throw new CliException(ExitCodes.Failure, e.Message);
                }
                if (reply.Status == MonReplyStatus.Ok || reply.Status == MonReplyStatus.Failed && reply.Code == (int)MonErrorCode.NotFound)
                {
                    return null;
                }
                why = reply.Message.Trim();
                if (reply.Status != MonReplyStatus.Failed || reply.Code != (int)MonErrorCode.Refused)
                {
                    return why;
                }
            }
            if (DateTime.UtcNow > until)
            {
                return why;
            }
            await Task.Delay(500, ct);
        }
    }

    /// <summary>The OSD id named by "3", "osd.3", or a disk this node's DATA/osd.N.disk is (or links to).</summary>
    private static int ResolveOsd(LocalDaemons local, string which)
    {
        var text = which.StartsWith("osd.", StringComparison.Ordinal) ? which[4..] : which;
        var ids = local.OsdIds();
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
        {
            return ids.Contains(id) ? id : throw new CliException(ExitCodes.NotFound, $"osd.{id} is not a disk of this node ({local.DataDirectory}); `appliance disk ls` lists them");
        }
        var full = Path.GetFullPath(which);
        foreach (var candidate in ids)
        {
            var link = local.OsdDisk(candidate);
            if (link == full || new FileInfo(link).LinkTarget is { } target && Path.GetFullPath(target) == full)
            {
                return candidate;
            }
        }
        throw new CliException(ExitCodes.NotFound, $"{which} is not an OSD disk of this node ({local.DataDirectory}); `appliance disk ls` lists them");
    }

    /// <summary>Until no PG of the current osdmap has <paramref name="id"/> in its up or acting set (pg_temp
    /// included) and no PG the primaries report lists it as acting or is not active+clean.</summary>
    internal static async Task DrainAsync(MonClient client, int id, TimeSpan bound, TextWriter output, CancellationToken ct)
    {
        var until = DateTime.UtcNow + bound;
        var said = -1;
        while (true)
        {
            var map = await CurrentMapAsync(client, ct);
            var mapped = map.Pools.Values.SelectMany(p => Enumerable.Range(0, p.PgNum).Select(s => map.MapPg(new PgId(p.Id, (uint)s))))
                .Where(m => m.Up.Contains(id) || m.Acting.Contains(id)).Select(m => m.Pg.ToString()).ToList();
            var stats = map.Pools.Count == 0 ? [] : await client.GetPgStatsAsync(null, ct);
            var busy = stats.Where(s => s.Acting.Contains(id) || s.State != "active+clean").Select(s => $"{s.Pg} {s.State}").ToList();
            if (mapped.Count == 0 && busy.Count == 0)
            {
                return;
            }
            if (mapped.Count + busy.Count != said)
            {
                said = mapped.Count + busy.Count;
                await output.WriteLineAsync($"waiting for osd.{id} to drain: {mapped.Count} PGs still map to it, {busy.Count} PGs not active+clean without it");
            }
            if (DateTime.UtcNow > until)
            {
                throw new CliException(ExitCodes.Failure,
                    $"osd.{id} did not drain within {bound.TotalSeconds:0} s: PGs {string.Join(", ", mapped.Concat(busy).Take(10))}{(mapped.Count + busy.Count > 10 ? ", ..." : "")}; see `appliance pg ls`, or add --force to remove it anyway");
            }
            await Task.Delay(1000, ct);
        }
    }

    private static async Task MustAsync(Task<MonReply> call, string what)
    {
        MonReply reply;
        try
        {
            reply = await call;
        }
        catch (MonitorsUnavailableException e)
        {
            throw new CliException(ExitCodes.Failure, e.Message);
        }
        if (reply.Status != MonReplyStatus.Ok)
        {
            throw new CliException(reply.Status == MonReplyStatus.Denied ? ExitCodes.PermissionDenied : ExitCodes.Failure, $"the monitors refused to {what}: {reply.Message.Trim()}");
        }
    }
}
