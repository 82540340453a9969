using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Appliance.Cli.Common;
using Appliance.Client;
using Appliance.Fs.Cluster;
using Appliance.Fs.Meta;
using Appliance.Fs.Session;
using Appliance.Maps;
using Appliance.Maps.Protocol;

namespace Appliance.Cli.Commands;

/// <summary>
/// `fs create|ls|rm|mount|umount`: the cluster filesystem (fs/Cluster). A filesystem is a metadata pool and a data
/// pool; its record lives in the metadata pool (<see cref="FsRegistry"/>). `mount` serves it over FUSE from this
/// process (--foreground) or from a background process of this program that it starts and waits for.
/// </summary>
public static class FsCommands
{
    public static Command Create()
    {
        var fs = new Command("fs", "The cluster filesystem: create, list, remove, mount and unmount POSIX filesystems stored in pools.");
        MonitorCommands.AddCommon(fs);
        fs.Subcommands.Add(CreateFs());
        fs.Subcommands.Add(Ls());
        fs.Subcommands.Add(Rm());
        fs.Subcommands.Add(Mount());
        fs.Subcommands.Add(Umount());
        fs.Subcommands.Add(Check());
        return fs;
    }

    private static Argument<string> NameArg() => new("name") { Description = "The filesystem's name (letters, digits, '_', '-')." };

    private static string CheckName(string name) =>
        FsRegistry.CheckName(name) is { } bad ? throw new CliException(ExitCodes.InvalidInput, bad) : name;

    private static async Task<FsRecord> FindAsync(ClusterClient client, string name, CancellationToken ct) =>
        await FsRegistry.FindAsync(client, name, ct)
        ?? throw new CliException(ExitCodes.NotFound, $"no filesystem {name}; list them with `appliance fs ls`, make one with `appliance fs create {name}`");

    private static Command CreateFs()
    {
        var name = NameArg();
        var metaPool = new Option<string>("--meta-pool") { Description = "The metadata pool (replicated; made if missing). Default NAME.meta." };
        var dataPool = new Option<string>("--data-pool") { Description = "The data pool (made if missing). Default NAME.data." };
        var c = new Command("create", "Make a filesystem: its pools when missing, its root directory, its record.") { name, metaPool, dataPool };
        c.SetAction(async (parse, ct) =>
        {
            var fsName = CheckName(parse.GetRequiredValue(name));
            var meta = parse.GetValue(metaPool) ?? fsName + ".meta";
            var data = parse.GetValue(dataPool) ?? fsName + ".data";
            await using var client = await ObjectCommands.ConnectAsync(parse, ct);
            if (await FsRegistry.FindAsync(client, fsName, ct) is { } existing)
            {
                throw new CliException(ExitCodes.Refused, $"filesystem {fsName} exists (pools {existing.MetaPool}, {existing.DataPool}); remove it first with `appliance fs rm {fsName}`");
            }
            await using (var mon = MonitorCommands.Client(parse))
            {
                foreach (var pool in new[] { meta, data }.Distinct())
                {
                    if (client.OsdMap!.Pools.Values.FirstOrDefault(p => p.Name == pool) is { } info)
                    {
                        if (pool == meta && info.Type != PoolType.Replicated)
                        {
                            throw new CliException(ExitCodes.InvalidInput, $"pool {pool} is erasure-coded; metadata needs omap: give a replicated pool as --meta-pool");
                        }
                        continue;
                    }
                    var reply = await mon.CommandAsync(new PoolCreate(pool), ct);
                    if (reply.Status != MonReplyStatus.Ok)
                    {
                        throw new CliException(ExitCodes.Failure, $"creating pool {pool}: {reply.Message}");
                    }
                    parse.InvocationConfiguration.Output.WriteLine($"pool {pool} created");
                }
            }
            // The client sees the new pools once its map has them.
            using (var wait = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                wait.CancelAfter(MonitorCommands.TimeoutOf(parse));
                while (!new[] { meta, data }.All(p => client.OsdMap!.Pools.Values.Any(x => x.Name == p)))
                {
                    await client.WaitForEpochAsync(client.OsdMap!.Epoch + 1, wait.Token);
                }
            }
            if (!await FsRegistry.CreateAsync(client, new FsRecord(fsName, meta, data, DataStriper.DefaultStripe), MonitorCommands.TimeoutOf(parse), ct))
            {
                throw new CliException(ExitCodes.Refused, $"pool {meta} holds a filesystem {fsName} already");
            }
            parse.InvocationConfiguration.Output.WriteLine($"filesystem {fsName} created (metadata in pool {meta}, data in pool {data}); mount it with `appliance fs mount {fsName} MOUNTPOINT`");
            return ExitCodes.Ok;
        });
        return c;
    }

    private static Command Ls()
    {
        var c = new Command("ls", "One filesystem a line: name, metadata pool, data pool.");
        c.SetAction(async (parse, ct) =>
        {
            await using var client = await ObjectCommands.ConnectAsync(parse, ct);
            foreach (var r in await FsRegistry.ListAsync(client, ct))
            {
                parse.InvocationConfiguration.Output.WriteLine($"{r.Name} meta={r.MetaPool} data={r.DataPool}");
            }
            return ExitCodes.Ok;
        });
        return c;
    }

    private static Command Rm()
    {
        var name = NameArg();
        var really = new Option<bool>("--yes-i-really-mean-it") { Description = "Required when the filesystem holds files: removing it destroys them." };
        var c = new Command("rm", "Remove a filesystem and every file in it (its pools stay; remove them with `pool rm`). Refused while mounted.") { name, really };
        c.SetAction(async (parse, ct) =>
        {
            var fsName = CheckName(parse.GetRequiredValue(name));
            var timeout = MonitorCommands.TimeoutOf(parse);
            await using var client = await ObjectCommands.ConnectAsync(parse, ct);
            var record = await FindAsync(client, fsName, ct);
            var meta = new MetaClient(client.OpenPool(record.MetaPool), fsName, timeout);
            if (await LiveMountsAsync(meta, ct) is [var (_, where), ..])
            {
                throw new CliException(ExitCodes.Refused, $"filesystem {fsName} is mounted ({where}); unmount it first with `appliance fs umount MOUNTPOINT`");
            }
            var root = await meta.CallAsync(new MetaRequest(MetaOp.GetAttr, Caller.Root, default) { Ino = Superblock.RootIno }, ct);
            if (root.IsOk && root.Inode!.Children > 0 && !parse.GetValue(really))
            {
                throw new CliException(ExitCodes.Refused, $"filesystem {fsName} holds files; add --yes-i-really-mean-it to destroy them");
            }
            await FsRegistry.RemoveAsync(client, record, timeout, ct);
            parse.InvocationConfiguration.Output.WriteLine($"filesystem {fsName} removed (pools {record.MetaPool} and {record.DataPool} stay)");
            return ExitCodes.Ok;
        });
        return c;
    }

    private static Command Check()
    {
        var name = NameArg();
        var repair = new Option<bool>("--repair") { Description = "Fix what is found (refused while the filesystem is mounted): counts set from what is there, dangling entries removed, what no directory reaches linked into /lost+found, stray data removed." };
        var c = new Command("check", "Check a filesystem: every entry names an inode of its type, link counts and directory counts are right, every inode is reachable (or an orphan), no data object lies outside a file. Exit 0 when clean (or repaired), 1 when something is wrong.") { name, repair };
        c.SetAction(async (parse, ct) =>
        {
            var fsName = CheckName(parse.GetRequiredValue(name));
            var output = parse.InvocationConfiguration.Output;
            await using var client = await ObjectCommands.ConnectAsync(parse, ct);
            var record = await FindAsync(client, fsName, ct);
            var meta = new MetaClient(client.OpenPool(record.MetaPool), fsName, MonitorCommands.TimeoutOf(parse));
            var mounts = (await LiveMountsAsync(meta, ct)).Select(m => m.Where).ToList();
            if (mounts.Count > 0 && parse.GetValue(repair))
            {
                throw new CliException(ExitCodes.Refused, $"filesystem {fsName} is mounted ({string.Join("; ", mounts)}); unmount it everywhere before --repair");
            }
            if (mounts.Count > 0)
            {
                await output.WriteLineAsync($"note: {fsName} is mounted ({string.Join("; ", mounts)}): what changes during the check may show as a problem");
            }
            var now = MetaTime.FromDateTime(DateTime.UtcNow);
            var found = FsCheck.Run(await FsChecker.ReadAsync(client, record, now, ct));
            foreach (var p in found.Problems)
            {
                await output.WriteLineAsync(p);
            }
            if (found.Clean)
            {
                await output.WriteLineAsync($"filesystem {fsName}: clean");
                return ExitCodes.Ok;
            }
            if (!parse.GetValue(repair))
            {
                await output.WriteLineAsync($"filesystem {fsName}: {found.Problems.Count} problem(s); `appliance fs check {fsName} --repair` fixes them");
                return ExitCodes.Failure;
            }
            await FsChecker.RepairAsync(client, record, found, ct);
            var again = FsCheck.Run(await FsChecker.ReadAsync(client, record, now, ct));
            if (!again.Clean)
            {
                foreach (var p in again.Problems)
                {
                    await output.WriteLineAsync("after the repair: " + p);
                }
                await output.WriteLineAsync($"filesystem {fsName}: {again.Problems.Count} problem(s) left after the repair; run it again, and report it if they stay");
                return ExitCodes.Failure;
            }
            await output.WriteLineAsync($"filesystem {fsName}: {found.Problems.Count} problem(s) repaired; clean now");
            return ExitCodes.Ok;
        });
        return c;
    }

    /// <summary>The filesystem's mount records, less those <see cref="IsStale"/> finds stale (which it removes).</summary>
    private static async Task<List<(string Id, string Where)>> LiveMountsAsync(MetaClient meta, CancellationToken ct)
    {
        var live = new List<(string, string)>();
        foreach (var (id, where) in await FsRegistry.MountsAsync(meta, ct))
        {
            if (IsStale(where))
            {
                await FsRegistry.UnregisterMountAsync(meta, id, ct);
                continue;
            }
            live.Add((id, where));
        }
        return live;
    }

    /// <summary>A mount record ("HOST PID MOUNTPOINT") of this host whose process is gone: a mount that crashed.
    /// Records of other hosts are trusted (their leases come with a later issue).</summary>
    private static bool IsStale(string where)
    {
        var parts = where.Split(' ', 3);
        return parts.Length == 3 && parts[0] == Environment.MachineName
            && int.TryParse(parts[1], CultureInfo.InvariantCulture, out var pid) && !Directory.Exists($"/proc/{pid}");
    }

    private static Command Mount()
    {
        var name = NameArg();
        var mountPoint = new Argument<string>("mountpoint") { Description = "An existing directory." };
        var foreground = new Option<bool>("--foreground") { Description = "Serve from this process until unmounted (or SIGINT/SIGTERM)." };
        var options = new Option<string>("-o") { Description = "Mount options, comma-separated: ro, rw, allow_other, noallow_other, default_permissions, lease=SECONDS (how long the locks of this mount outlive it if it dies; default 30)." };
        var log = new Option<string>("--log") { Description = "Where the background mount writes its log (default: /tmp/appliance-fs-NAME.log)." };
        var c = new Command("mount", "Mount a filesystem at a directory; returns once it is mounted (the mount runs in the background unless --foreground).")
        {
            name, mountPoint, foreground, options, log,
        };
        c.SetAction(async (parse, ct) =>
        {
            var fsName = CheckName(parse.GetRequiredValue(name));
            var path = Path.GetFullPath(parse.GetRequiredValue(mountPoint));
            if (!Directory.Exists(path))
            {
                throw new CliException(ExitCodes.NotFound, $"no directory {path} to mount on; make it with `mkdir -p {path}`");
            }
            var (fuse, lease) = ParseOptions(parse.GetValue(options), fsName);
            if (parse.GetValue(foreground))
            {
                return await ServeAsync(parse, fsName, path, fuse, lease, ct);
            }
            return await StartBackgroundAsync(parse, fsName, path, parse.GetValue(log) ?? $"/tmp/appliance-fs-{fsName}.log", ct);
        });
        return c;
    }

    private static (FuseOptions Fuse, TimeSpan Lease) ParseOptions(string? list, string fsName)
    {
        var o = new FuseOptions { FsName = "appliance:" + fsName, Subtype = "appliance" };
        var lease = LeaseKeeper.DefaultLease;
        foreach (var opt in (list ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            if (opt.StartsWith("lease=", StringComparison.Ordinal))
            {
                lease = double.TryParse(opt.AsSpan(6), NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds >= 1 && seconds <= MountLease.MaxLeaseMs / 1000
                    ? TimeSpan.FromSeconds(seconds)
                    : throw new CliException(ExitCodes.Usage, $"mount option '{opt}': a lease is 1 to {MountLease.MaxLeaseMs / 1000} seconds");
                continue;
            }
            o = opt switch
            {
                "ro" => o with { ReadOnly = true },
                "rw" => o with { ReadOnly = false },
                "allow_other" => o with { AllowOther = true },
                "noallow_other" => o with { AllowOther = false },
                "default_permissions" => o with { DefaultPermissions = true },
                _ => throw new CliException(ExitCodes.Usage, $"unknown mount option '{opt}'; known: ro, rw, allow_other, noallow_other, default_permissions, lease=SECONDS"),
            };
        }
        return (o, lease);
    }

    private static async Task<int> ServeAsync(ParseResult parse, string fsName, string path, FuseOptions fuse, TimeSpan lease, CancellationToken ct)
    {
        var output = parse.InvocationConfiguration.Output;
        var timeout = MonitorCommands.TimeoutOf(parse);
        // Every backend call ends within 20 s, under the session's 30 s: the application gets the call's own error.
        var deadline = TimeSpan.FromSeconds(20);
        await using var client = await ObjectCommands.ConnectAsync(parse, ct, deadline);
        var record = await FindAsync(client, fsName, ct);
        var meta = new MetaClient(client.OpenPool(record.MetaPool), fsName, deadline);
        var mon = MonitorCommands.Client(parse);
        await using var monitors = mon;
        var monLock = new SemaphoreSlim(1, 1);
        var fs = new ClusterFileSystem(meta, client.OpenPool(record.DataPool), async token =>
        {
            // MonClient runs one request at a time.
            await monLock.WaitAsync(token);
            try
            {
                return PoolSpace.From(await mon.GetDfAsync(token), client.OsdMap!, record.DataPool);
            }
            finally
            {
                monLock.Release();
            }
        }, new ClusterFsOptions { StripeSize = record.StripeSize, Log = line => output.WriteLine(line) });
        var id = $"{client.Entity}.{client.Nonce:x16}";
        await FsRegistry.RegisterMountAsync(meta, id, $"{Environment.MachineName} {Environment.ProcessId} {path}", ct);
        // The lease this mount's locks live by: taken before the kernel can send a lock, ended after the last.
        var leaseKeeper = new LeaseKeeper(meta, id, lease, line => output.WriteLine(line));
        await leaseKeeper.StartAsync(ct);
        fs.Lease = leaseKeeper;
        FuseSession session;
        try
        {
            session = FuseSession.Mount(fs, path, fuse with { OperationTimeout = TimeSpan.FromSeconds(30) });
        }
        catch (FuseMountException e)
        {
            await leaseKeeper.DisposeAsync();
            await FsRegistry.UnregisterMountAsync(meta, id, CancellationToken.None);
            throw new CliException(ExitCodes.Failure, $"mounting {fsName} at {path}: {e.Message}");
        }
        // The only mount: what unlinked-while-open files other mounts left when they ended without closing them goes.
        if (!(await LiveMountsAsync(meta, ct)).Any(m => m.Id != id) && await fs.SweepOrphansAsync(ct) is > 0 and var swept)
        {
            await output.WriteLineAsync($"purged {swept} unlinked file(s) that mounts which ended without closing them had left");
        }
        // Other mounts' changes reach this one's kernel cache through notifies, and this one's reach them.
        var coherence = new Coherence(meta.Pool, fsName, id, line => output.WriteLine(line));
        try
        {
            await coherence.StartAsync(session, ct);
            fs.Coherence = coherence;
        }
        catch (ClusterClientException e)
        {
            await output.WriteLineAsync($"coherence: could not watch {MetaObjects.Watch(fsName)} ({e.Message}); other mounts' changes show here within {new ClusterFsOptions().CacheTimeout.TotalSeconds:0.#} s");
        }
        await output.WriteLineAsync($"mounted {fsName} at {path}");
        await output.FlushAsync(ct);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true; // we exit ourselves, after unmounting
            stop.Cancel();
        }
        using (PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal))
        using (PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal))
        {
            try
            {
                await session.Completion.WaitAsync(stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }
        fs.Coherence = null;
        await coherence.DisposeAsync();
        await session.DisposeAsync();
        // An orderly end: every lock of this mount released at once, not when its lease runs out.
        await leaseKeeper.DisposeAsync();
        using var cleanup = new CancellationTokenSource(timeout);
        await fs.FlushPurgesAsync(cleanup.Token);
        await FsRegistry.UnregisterMountAsync(meta, id, cleanup.Token);
        await output.WriteLineAsync($"unmounted {path}");
        return ExitCodes.Ok;
    }

    /// <summary>Starts `fs mount --foreground` of this same program in a session of its own (setsid), its output to
    /// <paramref name="log"/>, and waits until the directory is a mount (or the process ended: its log says why).</summary>
    private static async Task<int> StartBackgroundAsync(ParseResult parse, string fsName, string path, string log, CancellationToken ct)
    {
        var args = Environment.GetCommandLineArgs().Skip(1).Append("--foreground").ToList();
        var process = Environment.ProcessPath ?? "dotnet";
        var program = Path.GetFileName(process) == "appliance" ? [process] : new[] { process, Path.Combine(AppContext.BaseDirectory, "appliance.dll") };
        var psi = new ProcessStartInfo("setsid") { UseShellExecute = false };
        foreach (var a in (string[])["sh", "-c", "log=$1; shift; exec \"$@\" </dev/null >>\"$log\" 2>&1", "sh", log, .. program, .. args])
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi) ?? throw new CliException(ExitCodes.Failure, "could not start the mount process");
        var deadline = DateTime.UtcNow + MonitorCommands.TimeoutOf(parse) + TimeSpan.FromSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            if (LocalDaemons.IsMounted(path))
            {
                parse.InvocationConfiguration.Output.WriteLine($"mounted {fsName} at {path} (pid {p.Id}, log {log}); unmount with `appliance fs umount {path}`");
                return ExitCodes.Ok;
            }
            if (p.HasExited)
            {
                throw new CliException(ExitCodes.Failure, $"the mount process ended (exit {p.ExitCode}) without mounting {fsName}: see {log}");
            }
            await Task.Delay(50, ct);
        }
        throw new CliException(ExitCodes.Failure, $"{fsName} is not mounted at {path} yet; the mount process (pid {p.Id}) logs to {log}");
    }

    private static Command Umount()
    {
        var mountPoint = new Argument<string>("mountpoint") { Description = "Where a filesystem is mounted." };
        var c = new Command("umount", "Unmount a filesystem (its mount process then exits).") { mountPoint };
        c.SetAction((parse, ct) =>
        {
            var path = Path.GetFullPath(parse.GetRequiredValue(mountPoint));
            if (!LocalDaemons.IsMounted(path))
            {
                throw new CliException(ExitCodes.NotFound, $"nothing is mounted at {path}");
            }
            parse.InvocationConfiguration.Output.WriteLine(FuseMounter.Unmount(path, viaFusermount: !FuseMounter.IsRoot)
                ? $"unmounted {path}"
                : $"{path} was busy: detached; it goes away when the last file open on it is closed (see `fuser -vm {path}`)");
            return Task.FromResult(ExitCodes.Ok);
        });
        return c;
    }
}
