using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Text;
using Appliance.Cli.Common;
using Appliance.Maps;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Monitor.Daemon;
using Appliance.Wire.Auth;

namespace Appliance.Cli.Commands;

/// <summary>
/// `join-token NAME` (on a member), `join TOKEN` (on the new machine), `node ls`, `node rm NAME`. A token is an
/// entity the monitors record with an expiry (<see cref="JoinTokenCreate"/>); `join` authenticates with it, spends
/// it (<see cref="JoinConsume"/>: the monitors answer with the keys, sealed under the token's secret), writes this
/// node's configuration, becomes a monitor through `mon add` while the cluster has fewer than --mons, and is then
/// a node `disk add` can give OSDs.
/// </summary>
public static class NodeCommands
{
    public static IEnumerable<Command> Create()
    {
        yield return Token();
        yield return Join();
        yield return Node();
    }

    private static Command Token()
    {
        var name = new Argument<string>("name") { Description = "The new node's name (its CRUSH host, and its monitor's name if it becomes one)." };
        var ttl = new Option<double>("--ttl") { Description = "Seconds the token is good for. Default 3600.", DefaultValueFactory = _ => 3600 };
        var command = new Command("join-token", "Print a one-use token that lets a new machine join the cluster as node NAME (`appliance join TOKEN` there). It expires after --ttl.") { name, ttl };
        MonitorCommands.AddCommon(command);
        command.SetAction(async (parse, ct) =>
        {
            var node = NodeConf.CheckName(parse.GetRequiredValue(name), "name");
            var seconds = parse.GetValue(ttl);
            if (seconds is < 1 or > 7 * 24 * 3600)
            {
                throw new CliException(ExitCodes.Usage, $"--ttl {seconds}: give 1 to 604800 seconds");
            }
            var conf = MonitorCommands.LoadConf(parse);
            var secret = Secret.Generate();
            await using var client = MonitorCommands.Client(parse);
            var reply = await CallAsync(client.CommandAsync(new JoinTokenCreate(node, secret, (long)seconds), ct));
            await parse.InvocationConfiguration.Output.WriteLineAsync(new JoinToken(conf, node, secret).Encode());
            await parse.InvocationConfiguration.Error.WriteLineAsync($"{reply.Message.Trim()}; run `appliance join TOKEN` on the new machine");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Join()
    {
        var token = new Argument<string>("token") { Description = "What `appliance join-token NAME` printed on a member." };
        var mons = new Option<int>("--mons") { Description = "Become a monitor while the cluster has fewer than this many (3 or 5). Default 3.", DefaultValueFactory = _ => 3 };
        var monIp = new Option<string>("--mon-ip") { Description = "This node's address: IP (its monitor on port 6789) or IP:PORT. Default: its address in --public-network, else its first non-loopback IPv4 address." };
        var network = new Option<string>("--public-network") { Description = "The network (CIDR) the cluster uses, to choose this node's address." };
        var timeout = new Option<double>("--timeout") { Description = "Seconds to wait for the monitors. Default 60.", DefaultValueFactory = _ => 60 };
        var join = new Command("join", "Join this machine to a cluster as a node (and a monitor while there are fewer than --mons), with a token from `appliance join-token NAME`.") { token, mons, monIp, network, timeout };
        join.Options.Add(MonitorCommands.ConfDir);
        join.Options.Add(DiskCommands.DataDir);
        join.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            var t = JoinToken.Decode(parse.GetRequiredValue(token));
            var want = parse.GetValue(mons);
            if (want is not (3 or 5))
            {
                throw new CliException(ExitCodes.Usage, $"--mons {want}: give 3 or 5");
            }
            var bound = TimeSpan.FromSeconds(parse.GetValue(timeout));
            var confDir = Path.GetFullPath(MonitorCommands.ConfDirOf(parse));
            if (File.Exists(Path.Combine(confDir, ClusterConf.FileName)))
            {
                throw new CliException(ExitCodes.Refused, $"{confDir} already holds cluster {MonitorCommands.LoadConf(parse).Fsid}: this machine is a node already (give another --conf-dir for another node)");
            }
            var (ip, port) = BootstrapCommand.ParseMonIp(parse.GetValue(monIp));
            var address = NodeConf.ChooseAddress(ip, parse.GetValue(network));
            var monitors = t.Conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)).ToList();

            // Spend the token, authenticated by it: a forged one fails the handshake with every monitor.
            var nodeKey = Secret.Generate();
            MonReply reply;
            await using (var tokenClient = new MonClient(monitors, JoinTokenCreate.EntityOf(t.Node), t.Secret) { Deadline = bound })
            {
                try
                {
                    reply = await tokenClient.CommandAsync(new JoinConsume(t.Node, nodeKey), ct);
                }
                catch (MonitorsUnavailableException e) when (e.Message.StartsWith("every monitor refused", StringComparison.Ordinal))
                {
                    throw new CliException(ExitCodes.PermissionDenied, $"the monitors of cluster {t.Conf.Fsid} do not know this token (forged, for another cluster, or long expired): {e.Message}");
                }
                catch (MonitorsUnavailableException e)
                {
                    throw new CliException(ExitCodes.Failure, e.Message);
                }
            }
            if (reply.Status != MonReplyStatus.Ok || reply.Data is not { } sealedKeys)
            {
                throw new CliException(ExitCodes.PermissionDenied, $"the monitors refused the token: {reply.Message.Trim()}");
            }
            Keyring keys;
            try
            {
                keys = Keyring.Parse(Encoding.UTF8.GetString(SecretBox.Open(t.Secret, MonitorStateMachine.JoinPurpose, sealedKeys)), "join reply");
            }
            catch (Exception e) when (e is FormatException or System.Security.Cryptography.CryptographicException or Appliance.Wire.Codec.WireFormatException)
            {
                throw new CliException(ExitCodes.Failure, $"the monitors' answer to the join could not be opened with the token ({e.Message})");
            }
            var admin = keys.Find("client.admin") ?? throw new CliException(ExitCodes.Failure, "the monitors' answer holds no client.admin key");

            Directory.CreateDirectory(confDir);
            new NodeConf(t.Node, address.ToString(), parse.GetValue(network)).Save(confDir);
            Save(confDir, ClusterConf.AdminKeyringName, admin);
            var nodeEntity = JoinTokenCreate.NodeEntityOf(t.Node);
            Save(confDir, nodeEntity + ".keyring", new KeyringEntry(nodeEntity, nodeKey, Appliance.Monitor.Maps.MonOperations.NodeCaps));
            if (keys.Find(ClusterConf.MonEntity) is { } mon)
            {
                Save(confDir, ClusterConf.MonKeyringName, mon);
            }
            await using var client = new MonClient(monitors, nodeEntity, nodeKey) { Deadline = bound };
            var monmap = await CurrentMonMapAsync(client, ct);
            var conf = t.Conf;
            foreach (var m in conf.Monitors.Where(m => monmap.Find(m.Name) is null).ToList())
            {
                conf = conf.WithoutMonitor(m.Name);
            }
            foreach (var m in monmap.Monitors.Where(m => !conf.Monitors.Any(c => c.Name == m.Name)))
            {
                conf = conf.WithMonitor(m.Name, m.Address);
            }
            conf.Save(confDir);
            await output.WriteLineAsync($"node {t.Node} joined cluster {conf.Fsid} ({nodeEntity}; configuration in {confDir})");

            var local = new LocalDaemons(DiskCommands.DataDirOf(parse), confDir);
            Directory.CreateDirectory(local.DataDirectory);
            var services = new NodeServices(local);
            if (monmap.Monitors.Count < want && keys.Find(ClusterConf.MonEntity) is not null && monmap.Find(t.Node) is null)
            {
                var monAddress = new IPEndPoint(address, port).ToString();
                await CallAsync(client.CommandAsync(new MonAdd(t.Node, monAddress), ct));
                conf = conf.WithMonitor(t.Node, monAddress);
                conf.Save(confDir);
                await output.WriteLineAsync($"mon.{t.Node} added at {monAddress} (the cluster had {monmap.Monitors.Count} monitor{(monmap.Monitors.Count == 1 ? "" : "s")}, fewer than {want})");
                var daemon = local.Monitor(t.Node);
                await output.WriteLineAsync(await services.StartAsync(daemon, NodeServices.MonUnit(t.Node), ct));
                await WaitMemberAsync(() => new MonClient(monitors, nodeEntity, nodeKey) { Deadline = TimeSpan.FromSeconds(5) },
                    services, daemon, t.Node, IPEndPoint.Parse(monAddress), bound, ct);
                await output.WriteLineAsync($"mon.{t.Node} is a voting member");
            }
            var ours = conf.Monitors.Any(m => m.Name == t.Node) ? local.Monitor(t.Node) : null;
            await output.WriteAsync(await BootstrapCommand.WaitStatusAsync(services, ours, conf, bound, ct));
            await output.WriteLineAsync($"""

                Next, on this node:
                  export APPLIANCE_CONF_DIR={confDir}    (or --conf-dir {confDir} on any command)
                  appliance disk add /dev/vdb            (each disk of this node)
                """);
            return ExitCodes.Ok;
        });
        return join;
    }

    private static void Save(string confDir, string file, KeyringEntry entry)
    {
        var ring = new Keyring();
        ring.Add(entry);
        ring.Save(Path.Combine(confDir, file));
    }

    /// <summary>Until the new monitor answers and says it is a member of the Paxos configuration (it caught up and
    /// the leader moved the membership to it).</summary>
    private static async Task WaitMemberAsync(Func<MonClient> connect, NodeServices services, LocalDaemon daemon, string name, IPEndPoint at, TimeSpan bound, CancellationToken ct)
    {
        var until = DateTime.UtcNow + bound;
        var last = "";
        while (true)
        {
            try
            {
                // A fresh client each time: a monitor that refused our key (not caught up yet) stays refused by the
                // client that met the refusal.
                await using var client = connect();
                var reply = await client.QueryMonitorAsync(at, MonQuery.MonStatus, ct);
                last = reply.Message.Trim();
                var members = last.Split(", members ", 2) is [_, var rest] ? rest.Split(", ", 2)[0].Split(',') : [];
                if (members.Contains("mon." + name))
                {
                    return;
                }
            }
            // AuthenticationException: it has not caught up with the auth database that names this node's key yet.
            catch (Exception e) when (e is TimeoutException or IOException or MonitorsUnavailableException or AuthenticationException
                or OperationCanceledException && !ct.IsCancellationRequested)
            {
                last = e.Message;
            }
            if (services.Exited(daemon))
            {
                throw new CliException(ExitCodes.Failure, $"{daemon.Name} exited; the end of its log {services.Local.LogFile(daemon.Name)}:{services.Local.LogTail(daemon.Name)}");
            }
            if (DateTime.UtcNow > until)
            {
                throw new CliException(ExitCodes.Failure, $"mon.{name} is not a member after {bound.TotalSeconds:0} s ({last}); see {services.Local.LogFile(daemon.Name)}");
            }
            await Task.Delay(200, ct);
        }
    }

    private static Task<MonMap> CurrentMonMapAsync(MonClient client, CancellationToken ct) =>
        DiskCommands.FirstAsync(client.WatchMonMapAsync(null, ct), "monmap");

    private static async Task<MonReply> CallAsync(Task<MonReply> call)
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
            throw new CliException(reply.Status switch
            {
                MonReplyStatus.Denied => ExitCodes.PermissionDenied,
                MonReplyStatus.Failed when reply.Code == (int)MonErrorCode.InvalidArgument => ExitCodes.InvalidInput,
                MonReplyStatus.Failed when reply.Code == (int)MonErrorCode.NotFound => ExitCodes.NotFound,
                MonReplyStatus.Failed => ExitCodes.Refused,
                _ => ExitCodes.Failure,
            }, reply.Message.Trim());
        }
        return reply;
    }

    private static Command Node()
    {
        var node = new Command("node", "The cluster's nodes: machines with monitors or OSDs.");
        MonitorCommands.AddCommon(node);
        node.Options.Add(DiskCommands.DataDir);
        var ls = new Command("ls", "One node a line: its name, its monitor, its OSDs (up/in), whether it joined with a token; then the join tokens not yet used.");
        ls.SetAction(async (parse, ct) =>
        {
            await using var client = MonitorCommands.Client(parse);
            var monmap = await CurrentMonMapAsync(client, ct);
            var osdmap = await DiskCommands.CurrentMapAsync(client, ct);
            var entities = (await CallAsync(client.QueryAsync(MonQuery.AuthList, "", ct))).Message.Split('\n')
                .Select(l => l.Trim().Split(' ', 2)[0]).Where(l => l.StartsWith("client.", StringComparison.Ordinal)).ToHashSet();
            var names = monmap.Monitors.Select(m => m.Name)
                .Concat(osdmap.Osds.Values.Select(o => o.Host).Where(h => h.Length > 0))
                .Concat(entities.Where(e => e.StartsWith("client.node.", StringComparison.Ordinal)).Select(e => e["client.node.".Length..]))
                .Distinct().Order(StringComparer.Ordinal).ToList();
            var rows = new List<string[]> { new[] { "NAME", "MONITOR", "OSDS", "KEY" } };
            foreach (var n in names)
            {
                var mon = monmap.Find(n) is { } m ? m.Address : "-";
                var osds = osdmap.Osds.Values.Where(o => o.Host == n).Select(o => $"osd.{o.Id}({(o.Up ? "up" : "down")},{(o.In ? "in" : "out")})").ToList();
                rows.Add([n, mon, osds.Count == 0 ? "-" : string.Join(" ", osds), entities.Contains(JoinTokenCreate.NodeEntityOf(n)) ? JoinTokenCreate.NodeEntityOf(n) : "-"]);
            }
            var widths = Enumerable.Range(0, 3).Select(c => rows.Max(r => r[c].Length)).ToArray();
            var text = new StringBuilder();
            foreach (var r in rows)
            {
                text.AppendLine(string.Join("  ", r.Select((cell, c) => c < 3 ? cell.PadRight(widths[c]) : cell)));
            }
            foreach (var e in entities.Where(e => e.StartsWith("client.join.", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"join token for node {e["client.join.".Length..]} issued (used or not; `appliance auth ls` shows its caps: none once used)");
            }
            await parse.InvocationConfiguration.Output.WriteAsync(text.ToString());
            return ExitCodes.Ok;
        });
        node.Subcommands.Add(ls);

        var rmName = new Argument<string>("name") { Description = "The node to remove." };
        var force = new Option<bool>("--force") { Description = "Do not wait for its OSDs' PGs to move elsewhere." };
        var drainTimeout = new Option<double>("--drain-timeout") { Description = "Seconds to wait for its OSDs to drain. Default 3600.", DefaultValueFactory = _ => 3600 };
        var rm = new Command("rm", "Remove a node: its OSDs marked out and drained (no PG maps to them), their keys removed; its monitor removed; its node key removed. Run it on another node; then stop the node's daemons.") { rmName, force, drainTimeout };
        rm.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            var name = parse.GetRequiredValue(rmName);
            var services = DiskCommands.ServicesOf(parse);
            if (services.Node?.Name == name)
            {
                throw new CliException(ExitCodes.Refused, $"this is node {name}: run `appliance node rm {name}` on another node");
            }
            await using var client = MonitorCommands.Client(parse);
            var osdmap = await DiskCommands.CurrentMapAsync(client, ct);
            var monmap = await CurrentMonMapAsync(client, ct);
            var ids = osdmap.Osds.Values.Where(o => o.Host == name).Select(o => o.Id).ToList();
            var entities = (await CallAsync(client.QueryAsync(MonQuery.AuthList, "", ct))).Message;
            if (ids.Count == 0 && monmap.Find(name) is null && !entities.Contains(JoinTokenCreate.NodeEntityOf(name) + " ", StringComparison.Ordinal)
                && !entities.Contains(JoinTokenCreate.NodeEntityOf(name) + "\n", StringComparison.Ordinal))
            {
                throw new CliException(ExitCodes.NotFound, $"no node {name}: no monitor, no OSD on host {name}, no key {JoinTokenCreate.NodeEntityOf(name)}; `appliance node ls` lists them");
            }
            var inIds = ids.Where(id => osdmap.FindOsd(id) is { In: true }).ToList();
            if (inIds.Count > 0)
            {
                await CallAsync(client.CommandAsync(new OsdOut(inIds), ct));
                await output.WriteLineAsync($"{string.Join(", ", inIds.Select(i => $"osd.{i}"))} marked out");
            }
            if (!parse.GetValue(force))
            {
                foreach (var id in ids)
                {
                    await DiskCommands.DrainAsync(client, id, TimeSpan.FromSeconds(parse.GetValue(drainTimeout)), output, ct);
                }
            }
            // Its OSDs that are down (the node is gone, or its daemons were stopped) leave the osdmap; those still up
            // lose their key, and leave with `osd rm` once stopped.
            var removed = new List<int>();
            var kept = new List<int>();
            foreach (var id in ids)
            {
                var now = await DiskCommands.CurrentMapAsync(client, ct);
                if (now.FindOsd(id) is { Up: false } && await DiskCommands.RemoveFromMapAsync(client, id, TimeSpan.FromSeconds(parse.GetValue(force) ? 10 : 60), ct) is null)
                {
                    removed.Add(id);
                }
                else
                {
                    await RemoveEntityAsync(client, $"osd.{id}", ct);
                    kept.Add(id);
                }
            }
            if (monmap.Find(name) is not null)
            {
                await CallAsync(client.CommandAsync(new MonRemove(name), ct));
                var dir = MonitorCommands.ConfDirOf(parse);
                MonitorCommands.LoadConf(parse).WithoutMonitor(name).Save(dir);
                await output.WriteLineAsync($"mon.{name} removed");
            }
            await RemoveEntityAsync(client, JoinTokenCreate.NodeEntityOf(name), ct);
            await RemoveEntityAsync(client, JoinTokenCreate.EntityOf(name), ct);
            var osds = new List<string>();
            if (removed.Count > 0)
            {
                osds.Add($"{string.Join(", ", removed.Select(i => $"osd.{i}"))} removed from the osdmap");
            }
            if (kept.Count > 0)
            {
                osds.Add($"{string.Join(", ", kept.Select(i => $"osd.{i}"))} still up: their keys removed; once stopped, `appliance osd rm {string.Join(" ", kept)}` removes them from the osdmap");
            }
            await output.WriteLineAsync($"node {name} removed{(osds.Count > 0 ? $" ({string.Join("; ", osds)})" : "")}; stop its daemons on that machine (`appliance node stop` there)");
            return ExitCodes.Ok;
        });
        node.Subcommands.Add(rm);
        node.Subcommands.Add(Stop());
        node.Subcommands.Add(Start());
        return node;
    }

    /// <summary>`node stop`: this node's daemons stopped (not disabled): `systemctl stop appliance.target` under
    /// systemd, else every background process with a pid file in DATA/run (mounts, the NBD server, OSDs, then the
    /// monitor), SIGTERM then SIGKILL after 15 s.</summary>
    private static Command Stop()
    {
        var stop = new Command("stop", "Stop this node's daemons (its OSDs, then its monitor): `systemctl stop appliance.target` under systemd, else the background processes of --data. `node start` starts them again.");
        stop.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            var services = DiskCommands.ServicesOf(parse);
            if (services.UsesSystemd)
            {
                await NodeServices.SystemctlAsync(ct, "stop", "appliance.target");
                await output.WriteLineAsync("appliance.target stopped (its units stay enabled: they start again at boot, or with `appliance node start`)");
                return ExitCodes.Ok;
            }
            var daemons = services.Local.FromPidFiles();
            if (daemons.Count == 0)
            {
                await output.WriteLineAsync($"no daemon of this node runs (no pid file in {services.Local.RunDirectory})");
            }
            foreach (var daemon in daemons)
            {
                await output.WriteLineAsync(await services.Local.StopAsync(daemon, TimeSpan.FromSeconds(15), ct));
            }
            return ExitCodes.Ok;
        });
        return stop;
    }

    /// <summary>`node start`: this node's monitor (when cluster.conf lists mon.NAME) and every OSD of DATA started
    /// unless they run, as `bootstrap`, `join` and `disk add` started them.</summary>
    private static Command Start()
    {
        var start = new Command("start", "Start this node's daemons again: its monitor (when the cluster's configuration lists one of this node's name) and every OSD of --data, unless they run.");
        start.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            var services = DiskCommands.ServicesOf(parse);
            if (services.Node is not { } node)
            {
                throw new CliException(ExitCodes.NotFound, $"{services.Local.ConfDirectory} holds no {NodeConf.FileName}: this machine is not a node (`appliance bootstrap` or `appliance join` makes one)");
            }
            var conf = MonitorCommands.LoadConf(parse);
            if (conf.Monitors.Any(m => m.Name == node.Name))
            {
                await output.WriteLineAsync(await services.StartAsync(services.Local.Monitor(node.Name), NodeServices.MonUnit(node.Name), ct));
            }
            foreach (var id in services.Local.OsdIds())
            {
                await output.WriteLineAsync(await services.StartAsync(services.Osd(id), NodeServices.OsdUnit(id), ct));
            }
            return ExitCodes.Ok;
        });
        return start;
    }

    private static async Task RemoveEntityAsync(MonClient client, string entity, CancellationToken ct)
    {
        MonReply reply;
        try
        {
            reply = await client.CommandAsync(new AuthRemove(entity), ct);
        }
        catch (MonitorsUnavailableException e)
        {
            throw new CliException(ExitCodes.Failure, e.Message);
        }
        if (reply.Status != MonReplyStatus.Ok && !(reply.Status == MonReplyStatus.Failed && reply.Code == (int)MonErrorCode.NotFound))
        {
            throw new CliException(ExitCodes.Failure, $"the monitors did not remove {entity}: {reply.Message.Trim()}");
        }
    }
}
