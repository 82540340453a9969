using System.CommandLine;
using System.Globalization;
using System.Net;
using Appliance.Cli.Common;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;

namespace Appliance.Cli.Commands;

/// <summary>
/// `appliance bootstrap`: the first node of a new cluster. Defines the cluster (fsid, this node's monitor, the
/// monitors' and client.admin's keyrings) in CONF_DIR, records the node (<see cref="NodeConf"/>), starts the monitor
/// (<see cref="NodeServices"/>: a systemd unit or a background process as `cluster up` runs one) and prints the
/// cluster's status once the monitor answers.
/// </summary>
public static class BootstrapCommand
{
    public const int DefaultMonPort = 6789;

    public static Command Create()
    {
        var monIp = new Option<string>("--mon-ip") { Description = "The address of this node's monitor: IP (port 6789) or IP:PORT. Default: this machine's address in --public-network, else its first non-loopback IPv4 address." };
        var network = new Option<string>("--public-network") { Description = "The network (CIDR) the cluster's daemons and clients use, e.g. 10.0.0.0/24." };
        var name = new Option<string>("--name") { Description = "This node's name (its monitor's name and CRUSH host). Default: the machine's short host name." };
        var timeout = new Option<double>("--timeout") { Description = "Seconds to wait for the monitor to answer. Default 60.", DefaultValueFactory = _ => 60 };
        var bootstrap = new Command("bootstrap", "Make a new cluster with this machine as its first node: fsid, first monitor, admin keyring (in --conf-dir, default /etc/appliance; data in --data, default /var/lib/appliance); start the monitor and print the status.") { monIp, network, name, timeout };
        bootstrap.Options.Add(MonitorCommands.ConfDir);
        bootstrap.Options.Add(DiskCommands.DataDir);
        bootstrap.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            var confDir = Path.GetFullPath(MonitorCommands.ConfDirOf(parse));
            if (File.Exists(Path.Combine(confDir, ClusterConf.FileName)))
            {
                var existing = MonitorCommands.LoadConf(parse);
                throw new CliException(ExitCodes.Refused, $"{confDir} already holds cluster {existing.Fsid}; this node is bootstrapped (`appliance status --conf-dir {confDir}`). To make a new cluster, give another --conf-dir or remove that one");
            }
            var nodeName = NodeConf.CheckName(parse.GetValue(name) ?? NodeConf.DefaultName(), "--name");
            var (ip, port) = ParseMonIp(parse.GetValue(monIp));
            var address = NodeConf.ChooseAddress(ip, parse.GetValue(network));
            var monAddress = new IPEndPoint(address, port).ToString();

            var local = new LocalDaemons(DiskCommands.DataDirOf(parse), confDir);
            Directory.CreateDirectory(local.DataDirectory);
            // node.conf first: a conf dir with cluster.conf is a whole cluster definition, and a node's.
            new NodeConf(nodeName, address.ToString(), parse.GetValue(network)).Save(confDir);
            ClusterConf conf;
            try
            {
                conf = ClusterConf.Bootstrap(confDir, [(nodeName, monAddress)], DateTimeOffset.UtcNow);
            }
            catch (IOException e)
            {
                throw new CliException(ExitCodes.Refused, e.Message);
            }
            await output.WriteLineAsync($"cluster {conf.Fsid} defined in {confDir}: node {nodeName}, monitor mon.{nodeName} at {monAddress}");
            var services = new NodeServices(local);
            await output.WriteLineAsync(await services.StartAsync(local.Monitor(nodeName), NodeServices.MonUnit(nodeName), ct));

            var seconds = parse.GetValue(timeout);
            if (seconds is <= 0 or > 86400)
            {
                throw new CliException(ExitCodes.Usage, $"--timeout {seconds} is not a number of seconds between 0 and 86400");
            }
            var status = await WaitStatusAsync(services, local.Monitor(nodeName), conf, TimeSpan.FromSeconds(seconds), ct);
            await output.WriteAsync(status);
            await output.WriteLineAsync($"""

                Next:
                  export APPLIANCE_CONF_DIR={confDir}    (or --conf-dir {confDir} on any command)
                  appliance disk add /dev/vdb            (each disk of this node; --wipe to erase what it holds)
                  appliance join-token NODE              (on this node, for each other node; then `appliance join TOKEN` there)
                """);
            return ExitCodes.Ok;
        });
        return bootstrap;
    }

    /// <summary>--mon-ip as IP or IP:PORT (default port 6789); null IP when not given.</summary>
    internal static (IPAddress? Ip, int Port) ParseMonIp(string? text)
    {
        if (text is null)
        {
            return (null, DefaultMonPort);
        }
        if (IPAddress.TryParse(text, out var ip) && !text.Contains("]:", StringComparison.Ordinal) && text.Count(c => c == ':') != 1)
        {
            return (ip, DefaultMonPort);
        }
        if (IPEndPoint.TryParse(text, out var ep) && ep.Port != 0)
        {
            return (ep.Address, ep.Port);
        }
        throw new CliException(ExitCodes.Usage, $"--mon-ip {text}: write an IP address, or IP:PORT");
    }

    /// <summary>The cluster's status once its monitors answer (as client.admin), failing early if this node's
    /// monitor (<paramref name="monitor"/>, when it runs one) exits.</summary>
    internal static async Task<string> WaitStatusAsync(NodeServices services, LocalDaemon? monitor, ClusterConf conf, TimeSpan bound, CancellationToken ct)
    {
        var local = services.Local;
        var admin = Appliance.Wire.Auth.Keyring.Load(Path.Combine(local.ConfDirectory, ClusterConf.AdminKeyringName)).Find("client.admin")!;
        var until = DateTime.UtcNow + bound;
        var last = "";
        while (true)
        {
            await using (var client = new MonClient(conf.Monitors.Select(m => IPEndPoint.Parse(m.Address)), admin.Entity, admin.Key) { Deadline = TimeSpan.FromSeconds(5) })
            {
                try
                {
                    var reply = await client.QueryAsync(MonQuery.Status, "", ct);
                    if (reply.Status == MonReplyStatus.Ok)
                    {
                        return reply.Message.EndsWith('\n') ? reply.Message : reply.Message + "\n";
                    }
                    last = $"{reply.Status}: {reply.Message.Trim()}";
                }
                catch (MonitorsUnavailableException e)
                {
                    last = e.Message;
                }
            }
            if (monitor is not null && services.Exited(monitor))
            {
                throw new CliException(ExitCodes.Failure, $"{monitor.Name} exited; the end of its log {local.LogFile(monitor.Name)}:{local.LogTail(monitor.Name)}");
            }
            if (DateTime.UtcNow > until)
            {
                var see = monitor is null ? "`appliance mon status`" : services.UsesSystemd ? $"journalctl -u {NodeServices.MonUnit(monitor.Name[4..])}" : local.LogFile(monitor.Name);
                throw new CliException(ExitCodes.Failure, $"the monitors did not answer within {bound.TotalSeconds.ToString("0", CultureInfo.InvariantCulture)} s ({last}); see {see}");
            }
            await Task.Delay(200, ct);
        }
    }
}
