using Microsoft.Extensions.Logging;
using System.CommandLine;
using System.Globalization;
using System.Net;
using Appliance.Cli.Common;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Daemon;
using Appliance.Wire.Auth;
using Appliance.Wire.Messenger;

namespace Appliance.Cli.Commands;

/// <summary>
/// The monitors and everything asked of them: `mon bootstrap|run|status`, `status`, `pool`, `osd`, `auth`, `audit`,
/// `config`. Every client command works against any monitor of the quorum (the client follows the leader and
/// moves on from monitors that are down or outside the quorum).
/// </summary>
public static class MonitorCommands
{
    internal static readonly Option<string> ConfDir = new("--conf-dir")
    {
        Description = "The cluster's configuration directory (cluster.conf and keyrings). Default: $APPLIANCE_CONF_DIR or /etc/appliance.",
        Recursive = true,
    };

    internal static readonly Option<string> Entity = new("--id")
    {
        Description = "Who to authenticate as. Default: client.admin.",
        Recursive = true,
    };

    private static readonly Option<string> KeyringPath = new("--keyring")
    {
        Description = "The keyring holding that entity's key. Default: CONF_DIR/ENTITY.keyring.",
        Recursive = true,
    };

    private static readonly Option<double?> ClientTimeout = new("--timeout")
    {
        Description = "Seconds to keep trying the monitors (moving on from ones that are down or without quorum) before giving up. Default 30.",
        Recursive = true,
    };

    public static IEnumerable<Command> Create()
    {
        yield return Mon();
        yield return Status();
        yield return Pool();
        yield return Osd();
        yield return Auth();
        yield return Audit();
        yield return Config();
        yield return Pg();
        yield return Df();
    }

    internal static string ConfDirOf(ParseResult parse) =>
        parse.GetValue(ConfDir) ?? Environment.GetEnvironmentVariable("APPLIANCE_CONF_DIR") ?? "/etc/appliance";

    internal static ClusterConf LoadConf(ParseResult parse)
    {
        var dir = ConfDirOf(parse);
        try
        {
            return ClusterConf.Load(dir);
        }
        catch (FileNotFoundException e)
        {
            throw new CliException(ExitCodes.NotFound, e.Message);
        }
        catch (FormatException e)
        {
            throw new CliException(ExitCodes.InvalidInput, e.Message);
        }
    }

    internal static KeyringEntry LoadKey(ParseResult parse, string entity, string? path = null)
    {
        path ??= parse.GetValue(KeyringPath) ?? Path.Combine(ConfDirOf(parse), entity + ".keyring");
        if (!File.Exists(path))
        {
            throw new CliException(ExitCodes.NotFound, $"no keyring {path} for {entity}; give one with --keyring (an administrator makes it with `appliance auth get {entity}`)");
        }
        try
        {
            return Keyring.Load(path).Find(entity)
                ?? throw new CliException(ExitCodes.NotFound, $"{path} holds no key for {entity}");
        }
        catch (FormatException e)
        {
            throw new CliException(ExitCodes.InvalidInput, e.Message);
        }
        catch (UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.PermissionDenied, $"cannot read {path}: run as a user that may read the keyring (it is 0600)");
        }
    }

    internal static MonClient Client(ParseResult parse)
    {
        var conf = LoadConf(parse);
        var entity = parse.GetValue(Entity) ?? "client.admin";
        var key = LoadKey(parse, entity);
        return new MonClient(conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)), entity, key.Key) { Deadline = TimeoutOf(parse) };
    }

    /// <summary>--timeout, checked (default 30 s).</summary>
    internal static TimeSpan TimeoutOf(ParseResult parse)
    {
        var timeout = parse.GetValue(ClientTimeout) ?? 30;
        if (timeout is <= 0 or > 86400)
        {
            throw new CliException(ExitCodes.InvalidInput, $"--timeout {timeout} is not a number of seconds between 0 and 86400");
        }
        return TimeSpan.FromSeconds(timeout);
    }

    /// <summary>Prints a reply's text or turns its failure into the documented exit code.</summary>
    private static int Finish(ParseResult parse, MonReply reply)
    {
        var code = reply.Status switch
        {
            MonReplyStatus.Ok => ExitCodes.Ok,
            MonReplyStatus.Denied => ExitCodes.PermissionDenied,
            MonReplyStatus.Invalid => ExitCodes.InvalidInput,
            MonReplyStatus.Failed => (MonErrorCode)reply.Code switch
            {
                MonErrorCode.NotFound => ExitCodes.NotFound,
                MonErrorCode.InvalidArgument => ExitCodes.InvalidInput,
                _ => ExitCodes.Refused,
            },
            _ => ExitCodes.Failure,
        };
        if (code != ExitCodes.Ok)
        {
            throw new CliException(code, reply.Message.TrimEnd());
        }
        parse.InvocationConfiguration.Output.Write(reply.Message.EndsWith('\n') || reply.Message.Length == 0 ? reply.Message : reply.Message + "\n");
        return code;
    }

    private static async Task<int> RunAsync(ParseResult parse, Func<MonClient, Task<MonReply>> call)
    {
        await using var client = Client(parse);
        try
        {
            return Finish(parse, await call(client));
        }
        catch (MonitorsUnavailableException e)
        {
            throw new CliException(ExitCodes.Failure, e.Message);
        }
    }

    private static Command Query(string name, string description, MonQuery query, Argument<string>? argument = null)
    {
        var command = new Command(name, description);
        if (argument is not null)
        {
            command.Arguments.Add(argument);
        }
        command.SetAction((parse, ct) => RunAsync(parse, c => c.QueryAsync(query, argument is null ? "" : parse.GetRequiredValue(argument), ct)));
        return command;
    }

    private static Command Mon()
    {
        var mon = new Command("mon", "Create a cluster's monitors, run one, and see how each is doing.");
        mon.Options.Add(ConfDir);
        mon.Options.Add(Entity);
        mon.Options.Add(KeyringPath);
        mon.Options.Add(ClientTimeout);

        var monitors = new Option<string[]>("--mon") { Description = "A monitor as NAME=ADDRESS:PORT; repeat for 3 or 5 monitors.", Required = true, AllowMultipleArgumentsPerToken = true };
        var bootstrap = new Command("bootstrap", "Define a new cluster: writes cluster.conf, the monitors' keyring and client.admin's keyring into --conf-dir.") { monitors };
        bootstrap.SetAction(parse =>
        {
            var list = new List<(string, string)>();
            foreach (var m in parse.GetRequiredValue(monitors))
            {
                var eq = m.IndexOf('=');
                if (eq <= 0 || !IPEndPoint.TryParse(m[(eq + 1)..], out var ep) || ep.Port == 0)
                {
                    throw new CliException(ExitCodes.Usage, $"--mon {m}: write NAME=ADDRESS:PORT, e.g. --mon a=10.0.0.1:6789");
                }
                list.Add((m[..eq], m[(eq + 1)..]));
            }
            if (list.Select(x => x.Item1).Distinct().Count() != list.Count)
            {
                throw new CliException(ExitCodes.Usage, "two monitors share a name");
            }
            try
            {
                var conf = ClusterConf.Bootstrap(ConfDirOf(parse), list, DateTimeOffset.UtcNow);
                parse.InvocationConfiguration.Output.WriteLine($"cluster {conf.Fsid} defined in {ConfDirOf(parse)} with {list.Count} monitor(s); start each with `appliance mon run --name NAME --data DIR`");
                return ExitCodes.Ok;
            }
            catch (IOException e)
            {
                throw new CliException(ExitCodes.Refused, e.Message);
            }
        });
        mon.Subcommands.Add(bootstrap);

        var name = new Option<string>("--name") { Description = "Which monitor of cluster.conf this is.", Required = true };
        var data = new Option<string>("--data") { Description = "The monitor's own store directory (created on first start).", Required = true };
        var run = new Command("run", "Run one monitor in the foreground until it is stopped (SIGTERM or Ctrl-C).") { name, data };
        run.SetAction(async (parse, ct) =>
        {
            // Socket continuations on the event threads: no monitor socket continuation blocks (requests and Paxos
            // messages are posted to the loop thread, which alone writes to disk). Before anything here opens a
            // socket (the runtime reads the setting then).
            SocketCompletions.RunInline();
            var conf = LoadConf(parse);
            var monKey = LoadKey(parse, ClusterConf.MonEntity, Path.Combine(ConfDirOf(parse), ClusterConf.MonKeyringName));
            var admin = LoadKey(parse, "client.admin", Path.Combine(ConfDirOf(parse), ClusterConf.AdminKeyringName));
            using var loggers = DaemonLogging.Create();
            var log = loggers.CreateLogger("Appliance.Cli.Mon");
            MonitorDaemon daemon;
            try
            {
                daemon = new MonitorDaemon(new MonitorDaemonOptions
                {
                    Name = parse.GetRequiredValue(name),
                    DataDirectory = parse.GetRequiredValue(data),
                    Conf = conf,
                    MonKey = monKey.Key,
                    Admin = admin,
                }, loggers);
            }
            catch (ArgumentException e)
            {
                throw new CliException(ExitCodes.InvalidInput, e.Message);
            }
            await using (daemon)
            {
                try
                {
                    await daemon.StartAsync();
                }
                catch (Exception e) when (e is InvalidOperationException or MonitorsUnavailableException)
                {
                    throw new CliException(ExitCodes.Failure, e.Message);
                }
                try
                {
                    await Task.Delay(Timeout.Infinite, ct);
                }
                catch (OperationCanceledException)
                {
                    log.LogInformation("mon.{Name} stopping", parse.GetRequiredValue(name));
                }
            }
            return ExitCodes.Ok;
        });
        mon.Subcommands.Add(run);

        var addName = new Argument<string>("name") { Description = "The new monitor's name." };
        var addAddress = new Argument<string>("address") { Description = "Its messenger address, ADDRESS:PORT." };
        var add = new Command("add", "Add a monitor to the cluster (committed through Paxos: it becomes a voting member once it has caught up). Lists it in CONF_DIR/cluster.conf; then start it with `appliance mon run --name NAME`.") { addName, addAddress };
        add.SetAction(async (parse, ct) =>
        {
            var monName = parse.GetRequiredValue(addName);
            var address = parse.GetRequiredValue(addAddress);
            try
            {
                ClusterConf.ParseEndpoint(address, $"mon.{monName}");
            }
            catch (FormatException e)
            {
                throw new CliException(ExitCodes.InvalidInput, e.Message);
            }
            var code = await RunAsync(parse, c => c.CommandAsync(new MonAdd(monName, address), ct));
            var dir = ConfDirOf(parse);
            LoadConf(parse).WithMonitor(monName, address).Save(dir);
            await parse.InvocationConfiguration.Output.WriteLineAsync(
                $"{Path.Combine(dir, ClusterConf.FileName)} now lists mon.{monName}; copy it (with {ClusterConf.MonKeyringName} and {ClusterConf.AdminKeyringName}) to the new monitor's node and run: appliance mon run --name {monName} --data DIR --conf-dir CONF_DIR");
            return code;
        });
        mon.Subcommands.Add(add);

        var rmName = new Argument<string>("name") { Description = "The monitor to remove." };
        var rm = new Command("rm", "Remove a monitor from the cluster (a leader that is removed hands leadership to another first). Drops it from CONF_DIR/cluster.conf.") { rmName };
        rm.SetAction(async (parse, ct) =>
        {
            var monName = parse.GetRequiredValue(rmName);
            var code = await RunAsync(parse, c => c.CommandAsync(new MonRemove(monName), ct));
            var dir = ConfDirOf(parse);
            LoadConf(parse).WithoutMonitor(monName).Save(dir);
            await parse.InvocationConfiguration.Output.WriteLineAsync($"{Path.Combine(dir, ClusterConf.FileName)} no longer lists mon.{monName}; stop its `appliance mon run` and copy the conf to the other nodes");
            return code;
        });
        mon.Subcommands.Add(rm);

        var status = new Command("status", "Ask every monitor for its own view: role, leader, members, committed index.");
        status.SetAction(async (parse, ct) =>
        {
            var conf = LoadConf(parse);
            await using var client = Client(parse);
            var output = parse.InvocationConfiguration.Output;
            var answered = 0;
            foreach (var (monName, address) in conf.Monitors)
            {
                try
                {
                    var reply = await client.QueryMonitorAsync(IPEndPoint.Parse(address), MonQuery.MonStatus, ct);
                    output.Write(reply.Message);
                    answered++;
                }
                catch (Exception e) when (e is TimeoutException or IOException or MonitorsUnavailableException or OperationCanceledException && !ct.IsCancellationRequested)
                {
                    output.WriteLine($"mon.{monName}: not answering at {address} ({e.Message})");
                }
            }
            return answered * 2 > conf.Monitors.Count ? ExitCodes.Ok : ExitCodes.Failure;
        });
        mon.Subcommands.Add(status);
        return mon;
    }

    private static Command Status()
    {
        var c = Query("status", "The cluster's health: monitors, OSDs up and in, pools.", MonQuery.Status);
        AddCommon(c);
        return c;
    }

    internal static void AddCommon(Command c)
    {
        c.Options.Add(ConfDir);
        c.Options.Add(Entity);
        c.Options.Add(KeyringPath);
        c.Options.Add(ClientTimeout);
    }

    private static Command Pool()
    {
        var pool = new Command("pool", "Create, list, change and remove pools.");
        AddCommon(pool);
        var name = new Argument<string>("name") { Description = "The pool's name." };
        var size = new Option<int?>("--size") { Description = "Replicas (replicated pools). Default 3." };
        var minSize = new Option<int?>("--min-size") { Description = "Replicas needed to accept writes. Default size - size/2." };
        var pgNum = new Option<int?>("--pg-num") { Description = "Placement groups. Default: chosen from the number of OSDs." };
        var erasure = new Option<string?>("--erasure") { Description = "Erasure-coded K+M instead of replicated, e.g. 4+2." };
        var quotaBytes = new Option<string?>("--quota-bytes") { Description = "Refuse writes beyond this size (e.g. 100G)." };
        var quotaObjects = new Option<ulong>("--quota-objects") { Description = "Refuse writes beyond this many objects." };
        var create = new Command("create", "Create a pool.") { name, size, minSize, pgNum, erasure, quotaBytes, quotaObjects };
        create.SetAction((parse, ct) =>
        {
            int? k = null, m = null;
            if (parse.GetValue(erasure) is { } ec)
            {
                var parts = ec.Split('+');
                if (parts.Length != 2 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out var kk) || !int.TryParse(parts[1], CultureInfo.InvariantCulture, out var mm))
                {
                    throw new CliException(ExitCodes.Usage, $"--erasure {ec}: write K+M, e.g. 4+2");
                }
                (k, m) = (kk, mm);
            }
            var bytes = parse.GetValue(quotaBytes) is { } q ? (ulong)ByteSize.Parse(q, "--quota-bytes") : 0UL;
            var command = new PoolCreate(parse.GetRequiredValue(name), k is null ? PoolType.Replicated : PoolType.Erasure,
                parse.GetValue(size), parse.GetValue(minSize), parse.GetValue(pgNum), null, k, m, bytes, parse.GetValue(quotaObjects));
            return RunAsync(parse, c => c.CommandAsync(command, ct));
        });
        pool.Subcommands.Add(create);
        pool.Subcommands.Add(Query("ls", "List pools.", MonQuery.PoolList));

        var rmName = new Argument<string>("name") { Description = "The pool to remove, with all its data." };
        var really = new Option<bool>("--yes-i-really-mean-it") { Description = "Required: removing a pool destroys its data." };
        var rm = new Command("rm", "Remove a pool and all its data.") { rmName, really };
        rm.SetAction((parse, ct) =>
        {
            if (!parse.GetValue(really))
            {
                throw new CliException(ExitCodes.Refused, $"removing pool {parse.GetRequiredValue(rmName)} destroys its data; add --yes-i-really-mean-it if that is what you want");
            }
            return RunAsync(parse, c => c.CommandAsync(new PoolRemove(parse.GetRequiredValue(rmName)), ct));
        });
        pool.Subcommands.Add(rm);

        var setName = new Argument<string>("name") { Description = "The pool." };
        var field = new Argument<string>("field") { Description = "size, min_size, pg_num, pgp_num, quota_max_bytes or quota_max_objects." };
        var value = new Argument<string>("value") { Description = "The new value." };
        var set = new Command("set", "Change one setting of a pool.") { setName, field, value };
        set.SetAction((parse, ct) => RunAsync(parse, c => c.CommandAsync(new PoolSet(parse.GetRequiredValue(setName), parse.GetRequiredValue(field), parse.GetRequiredValue(value)), ct)));
        pool.Subcommands.Add(set);
        return pool;
    }

    private static Command Osd()
    {
        var osd = new Command("osd", "The OSDs as the monitors see them.");
        AddCommon(osd);
        osd.Subcommands.Add(Query("tree", "The CRUSH hierarchy with each OSD's state (up/down, in/out) and weight.", MonQuery.OsdTree));
        osd.Subcommands.Add(Watch());
        osd.Subcommands.Add(Blocklist());
        foreach (var (verb, markIn) in new[] { ("out", false), ("in", true) })
        {
            var ids = new Argument<int[]>("ids") { Description = "OSD ids (3 or osd.3).", Arity = ArgumentArity.OneOrMore, CustomParser = ParseIds };
            var dryRun = new Option<bool>("--dry-run") { Description = "Only print how many PGs and bytes the change would move." };
            var c = new Command(verb, (markIn ? "Mark OSDs in: data is placed on them again." : "Mark OSDs out: their data moves elsewhere.")
                + " Prints how many PGs and bytes move first.") { ids, dryRun };
            c.SetAction((parse, ct) => RunAsync(parse, async client =>
            {
                var list = parse.GetRequiredValue(ids);
                MonCommand command = markIn ? new OsdIn(list) : new OsdOut(list);
                var estimate = await EstimateMoveAsync(client, map => PgMovement.WithInOut(map, list, markIn), ct);
                var line = $"{command.Describe()} {estimate}\n";
                if (parse.GetValue(dryRun))
                {
                    return new MonReply(MonReplyStatus.Ok, 0, line);
                }
                var reply = await client.CommandAsync(command, ct);
                return reply.Status == MonReplyStatus.Ok ? reply with { Message = line + reply.Message } : reply;
            }));
            osd.Subcommands.Add(c);
        }
        foreach (var (verb, set) in new[] { ("set", true), ("unset", false) })
        {
            var flag = new Argument<string>("flag") { Description = "noout: down OSDs are not marked out (for maintenance)." };
            var c = new Command(verb, set ? "Set a cluster flag (noout)." : "Clear a cluster flag (noout).") { flag };
            c.SetAction((parse, ct) => RunAsync(parse, client => client.CommandAsync(new OsdSetFlag(parse.GetRequiredValue(flag), set), ct)));
            osd.Subcommands.Add(c);
        }
        var rmIds = new Argument<int[]>("ids") { Description = "OSD ids (3 or osd.3).", Arity = ArgumentArity.OneOrMore, CustomParser = ParseIds };
        var rmDryRun = new Option<bool>("--dry-run") { Description = "Only print how many PGs and bytes the removal would move." };
        var rm = new Command("rm", "Remove OSDs from the cluster (osdmap, CRUSH, their key). Refused while one is up or in, a PG's placement names it, or any PG is not active+clean.") { rmIds, rmDryRun };
        rm.SetAction((parse, ct) => RunAsync(parse, async client =>
        {
            var list = parse.GetRequiredValue(rmIds);
            var command = new OsdRemove(list);
            // An OSD that may be removed is out and in no placement: nothing moves, but say so (and the refusal says
            // why when something would).
            var estimate = await EstimateMoveAsync(client, map => PgMovement.WithInOut(map, list, markIn: false), ct);
            var line = $"{command.Describe()} {estimate}\n";
            if (parse.GetValue(rmDryRun))
            {
                return new MonReply(MonReplyStatus.Ok, 0, line);
            }
            var reply = await client.CommandAsync(command, ct);
            return reply.Status == MonReplyStatus.Ok ? reply with { Message = line + reply.Message } : reply;
        }));
        osd.Subcommands.Add(rm);
        return osd;
    }

    /// <summary>What a change would move, from the current osdmap and the PG sizes the leader holds.</summary>
    private static async Task<string> EstimateMoveAsync(MonClient client, Func<OsdMap, OsdMap> change, CancellationToken ct)
    {
        OsdMap? map = null;
        await foreach (var m in client.WatchOsdMapAsync(null, ct))
        {
            map = m;
            break;
        }
        if (map is null)
        {
            return "(the osdmap could not be read: PGs moved unknown)";
        }
        IReadOnlyDictionary<PgId, ulong> sizes;
        try
        {
            sizes = (await client.GetPgStatsAsync(null, ct)).ToDictionary(s => s.Pg, s => s.Bytes);
        }
        catch (MonRequestFailedException)
        {
            sizes = new Dictionary<PgId, ulong>();
        }
        try
        {
            return PgMovement.Describe(PgMovement.Between(map, change(map), sizes));
        }
        catch (ArgumentException e)
        {
            return $"(PGs moved unknown: {e.Message})";
        }
    }

    /// <summary>`osd blocklist add|rm|ls`: fence client instances (ENTITY:NONCE) off the OSDs.</summary>
    private static Command Blocklist()
    {
        var blocklist = new Command("blocklist", "Client instances the OSDs refuse (fencing a dead NBD server or mount before another takes over).");
        var addInstance = new Argument<string>("instance") { Description = "ENTITY:NONCE, e.g. client.vm:4711." };
        var seconds = new Argument<long>("seconds") { Description = "How long (default: mon_osd_blocklist_default_expire, 1 h).", Arity = ArgumentArity.ZeroOrOne };
        var add = new Command("add", "Blocklist a client instance: OSDs refuse its ops from the epoch that lists it.") { addInstance, seconds };
        add.SetAction((parse, ct) => RunAsync(parse, c => c.CommandAsync(new OsdBlocklistAdd(parse.GetRequiredValue(addInstance), parse.GetValue(seconds)), ct)));
        blocklist.Subcommands.Add(add);
        var rmInstance = new Argument<string>("instance") { Description = "ENTITY:NONCE." };
        var rm = new Command("rm", "Take a client instance off the blocklist.") { rmInstance };
        rm.SetAction((parse, ct) => RunAsync(parse, c => c.CommandAsync(new OsdBlocklistRemove(parse.GetRequiredValue(rmInstance)), ct)));
        blocklist.Subcommands.Add(rm);
        blocklist.Subcommands.Add(Query("ls", "List blocklisted client instances with their expiry.", MonQuery.BlocklistList));
        return blocklist;
    }

    /// <summary>`pg ls [POOL]`: one PG a line from the statistics the OSDs report to the leader.</summary>
    private static Command Pg()
    {
        var pg = new Command("pg", "Placement groups as their primaries report them.");
        AddCommon(pg);
        var pool = new Argument<string>("pool") { Description = "Only this pool's PGs.", Arity = ArgumentArity.ZeroOrOne };
        var ls = new Command("ls", "One PG a line: its id (pool.seed in hex, as 2.1f), state, objects, bytes, acting set, primary.") { pool };
        ls.SetAction((parse, ct) => RunAsync(parse, c => c.QueryAsync(MonQuery.PgDump, parse.GetValue(pool) ?? "", ct)));
        pg.Subcommands.Add(ls);
        var id = new Argument<string>("pgid") { Description = "The PG, as pg ls writes it (2.1f)." };
        var query = new Command("query", "One PG as its primary last reported it: state, interval, info, past intervals, and what it waits for when it is down or incomplete.") { id };
        query.SetAction((parse, ct) => RunAsync(parse, async c =>
        {
            var text = parse.GetRequiredValue(id);
            if (!PgId.TryParse(text, out var pgId))
            {
                return new MonReply(MonReplyStatus.Invalid, 0, $"'{text}' is not a PG id: write the pool id, a dot and the seed in hex, as in 2.1f");
            }
            var reply = await c.QueryAsync(MonQuery.PgDump, "", ct);
            if (reply.Status != MonReplyStatus.Ok)
            {
                return reply;
            }
            if (PgStat.DecodeDump(reply.Data ?? []).FirstOrDefault(s => s.Pg == pgId) is not { } stat)
            {
                return new MonReply(MonReplyStatus.Failed, (int)MonErrorCode.NotFound,
                    $"pg {pgId} has no report: it does not exist, or its primary has not reported to the leading monitor yet (see `appliance pg ls`)");
            }
            var acting = string.Join(",", stat.Acting);
            var head = $"pg {stat.Pg}: {stat.State}, acting [{acting}], primary osd.{stat.Primary}, reported at osdmap epoch {stat.ReportedEpoch}\n";
            return new MonReply(MonReplyStatus.Ok, 0, head + stat.Detail);
        }));
        pg.Subcommands.Add(query);
        return pg;
    }

    private static Command Df()
    {
        var df = new Command("df", "Use per pool (objects, bytes stored, quotas) and per OSD (disk, PGs), from the OSDs' reports.");
        AddCommon(df);
        df.SetAction((parse, ct) => RunAsync(parse, c => c.QueryAsync(MonQuery.Df, "", ct)));
        return df;
    }

    /// <summary>`osd watch`: one line per osdmap epoch as the monitors commit it (a subscription), with what changed.</summary>
    private static Command Watch()
    {
        var count = new Option<int>("--count") { Description = "Stop after this many maps (default: run until interrupted)." };
        var c = new Command("watch", "Print each new osdmap epoch as it commits, with what changed (the first line is the current map).") { count };
        c.SetAction(async (parse, ct) =>
        {
            var limit = parse.GetValue(count);
            var output = parse.InvocationConfiguration.Output;
            await using var client = Client(parse);
            OsdMap? previous = null;
            var printed = 0;
            try
            {
                await foreach (var map in client.WatchOsdMapAsync(null, ct))
                {
                    await output.WriteLineAsync(DescribeEpoch(previous, map));
                    await output.FlushAsync(ct);
                    previous = map;
                    if (limit > 0 && ++printed >= limit)
                    {
                        break;
                    }
                }
            }
            catch (MonitorsUnavailableException e)
            {
                throw new CliException(ExitCodes.Failure, e.Message);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
            return ExitCodes.Ok;
        });
        return c;
    }

    /// <summary>"osdmap e12: 3 OSDs (3 up, 3 in), 2 pools; pool vm created; osd.1 down" — the changes against the
    /// previous map printed (none for the first).</summary>
    internal static string DescribeEpoch(OsdMap? previous, OsdMap map)
    {
        var line = $"osdmap e{map.Epoch}: {map.Osds.Count} OSDs ({map.UpCount} up, {map.InCount} in), {map.Pools.Count} pools";
        if (previous is null)
        {
            return line;
        }
        var changes = new List<string>();
        changes.AddRange(map.Pools.Values.Where(p => !previous.Pools.ContainsKey(p.Id)).Select(p => $"pool {p.Name} created"));
        changes.AddRange(previous.Pools.Values.Where(p => !map.Pools.ContainsKey(p.Id)).Select(p => $"pool {p.Name} removed"));
        changes.AddRange(map.Pools.Values.Where(p => previous.Pools.TryGetValue(p.Id, out var o) && o != p).Select(p => $"pool {p.Name} changed"));
        foreach (var o in map.Osds.Values)
        {
            if (previous.FindOsd(o.Id) is not { } was)
            {
                changes.Add($"osd.{o.Id} new");
                continue;
            }
            if (was.Up != o.Up)
            {
                changes.Add($"osd.{o.Id} {(o.Up ? "up" : "down")}");
            }
            if (was.In != o.In)
            {
                changes.Add($"osd.{o.Id} {(o.In ? "in" : "out")}");
            }
        }
        changes.AddRange(previous.Osds.Keys.Where(id => map.FindOsd(id) is null).Select(id => $"osd.{id} removed"));
        return changes.Count == 0 ? line : $"{line}; {string.Join("; ", changes)}";
    }

    private static int[] ParseIds(System.CommandLine.Parsing.ArgumentResult result)
    {
        var ids = new List<int>();
        foreach (var t in result.Tokens)
        {
            var text = t.Value.StartsWith("osd.", StringComparison.Ordinal) ? t.Value[4..] : t.Value;
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
            {
                result.AddError($"{t.Value} is not an OSD id; write 3 or osd.3");
                return [];
            }
            ids.Add(id);
        }
        return [.. ids];
    }

    private static Dictionary<string, string> ParseCaps(string[] pairs)
    {
        if (pairs.Length % 2 != 0)
        {
            throw new CliException(ExitCodes.Usage, "capabilities come in pairs: SERVICE 'CAPS', e.g. mon 'allow r' osd 'allow rw pool=vm'");
        }
        var caps = new Dictionary<string, string>();
        for (var i = 0; i < pairs.Length; i += 2)
        {
            caps[pairs[i]] = pairs[i + 1];
        }
        return caps;
    }

    private static Command Auth()
    {
        var auth = new Command("auth", "Entities, their keys and their capabilities.");
        AddCommon(auth);
        var entity = new Argument<string>("entity") { Description = "TYPE.ID, e.g. client.vm." };
        var caps = new Argument<string[]>("caps") { Description = "SERVICE 'CAPS' pairs, e.g. mon 'allow r' osd 'allow rw pool=vm'.", Arity = ArgumentArity.ZeroOrMore };
        var add = new Command("add", "Create an entity with a new key and print its keyring (give it to that client).") { entity, caps };
        add.SetAction(async (parse, ct) =>
        {
            var name = parse.GetRequiredValue(entity);
            await using var client = Client(parse);
            try
            {
                var reply = await client.CommandAsync(new AuthAdd(name, ParseCaps(parse.GetValue(caps) ?? []), Secret.Generate()), ct);
                if (reply.Status != MonReplyStatus.Ok)
                {
                    return Finish(parse, reply);
                }
                return Finish(parse, await client.QueryAsync(MonQuery.AuthGet, name, ct));
            }
            catch (MonitorsUnavailableException e)
            {
                throw new CliException(ExitCodes.Failure, e.Message);
            }
        });
        auth.Subcommands.Add(add);
        auth.Subcommands.Add(Query("ls", "List entities and their capabilities (not their keys).", MonQuery.AuthList));
        auth.Subcommands.Add(Query("get", "Print one entity's keyring (its key included).", MonQuery.AuthGet, new Argument<string>("entity") { Description = "TYPE.ID." }));
        var capsEntity = new Argument<string>("entity") { Description = "TYPE.ID." };
        var newCaps = new Argument<string[]>("caps") { Description = "SERVICE 'CAPS' pairs; they replace the old ones.", Arity = ArgumentArity.ZeroOrMore };
        var setCaps = new Command("caps", "Replace an entity's capabilities.") { capsEntity, newCaps };
        setCaps.SetAction((parse, ct) => RunAsync(parse, c => c.CommandAsync(new AuthCaps(parse.GetRequiredValue(capsEntity), ParseCaps(parse.GetValue(newCaps) ?? [])), ct)));
        auth.Subcommands.Add(setCaps);
        var rmEntity = new Argument<string>("entity") { Description = "TYPE.ID." };
        var rm = new Command("rm", "Remove an entity: it can no longer connect.") { rmEntity };
        rm.SetAction((parse, ct) => RunAsync(parse, c => c.CommandAsync(new AuthRemove(parse.GetRequiredValue(rmEntity)), ct)));
        auth.Subcommands.Add(rm);
        return auth;
    }

    private static Command Audit()
    {
        var count = new Option<int>("--count") { Description = "How many of the latest entries (default 50).", DefaultValueFactory = _ => 50 };
        var audit = new Command("audit", "Every administrative change: when, who, what, and the result.") { count };
        AddCommon(audit);
        audit.SetAction((parse, ct) => RunAsync(parse, c => c.QueryAsync(MonQuery.Audit, parse.GetValue(count).ToString(CultureInfo.InvariantCulture), ct)));
        return audit;
    }

    private static Command Config()
    {
        var config = new Command("config", "The cluster's central configuration.");
        AddCommon(config);
        var setName = new Argument<string>("name") { Description = "The option, e.g. mon_osd_down_out_interval." };
        var setValue = new Argument<string>("value") { Description = "Its new value." };
        var set = new Command("set", "Set an option for the whole cluster.") { setName, setValue };
        set.SetAction((parse, ct) => RunAsync(parse, c => c.CommandAsync(new ConfigSet(parse.GetRequiredValue(setName), parse.GetRequiredValue(setValue)), ct)));
        config.Subcommands.Add(set);
        config.Subcommands.Add(Query("get", "Print an option's value (its default when not set).", MonQuery.ConfigGet, new Argument<string>("name") { Description = "The option." }));
        config.Subcommands.Add(Query("dump", "Print every option set in the cluster.", MonQuery.ConfigDump));
        var rmName = new Argument<string>("name") { Description = "The option." };
        var rm = new Command("rm", "Return an option to its default.") { rmName };
        rm.SetAction((parse, ct) => RunAsync(parse, c => c.CommandAsync(new ConfigRemove(parse.GetRequiredValue(rmName)), ct)));
        config.Subcommands.Add(rm);
        return config;
    }
}
