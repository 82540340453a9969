using System.Buffers.Binary;
using System.CommandLine;
using System.Net;
using Appliance.Cli.Common;
using Appliance.Maps.Client;
using Appliance.Maps.Protocol;
using Appliance.Osd.Daemon;
using Appliance.Platform.Devices;
using Appliance.Store;
using Appliance.Wire.Auth;
using Appliance.Wire.Messenger;
using Microsoft.Extensions.Logging;

namespace Appliance.Cli.Commands;

/// <summary>`osd run`: one OSD in the foreground (node/Osd).</summary>
public static class OsdCommands
{
    public static void AddTo(Command osd)
    {
        osd.Subcommands.Add(Create());
        osd.Subcommands.Add(Run());
    }

    /// <summary>The caps an OSD's key carries (as the monitors give osd.N at `osd create`).</summary>
    private static readonly IReadOnlyDictionary<string, string> OsdCaps = new Dictionary<string, string> { ["mon"] = "allow rx", ["osd"] = "allow *" };

    private static Command Create()
    {
        var data = new Option<string>("--data") { Description = "The OSD's disk: a block device, or a file (created sparse when missing).", Required = true };
        var size = new Option<string>("--size") { Description = "Size of a file disk to create (e.g. 8G). Default 8G." };
        var wipe = new Option<bool>("--wipe") { Description = "Erase a disk that holds another store or a filesystem." };
        var create = new Command("create", "Create an OSD: a new id and key from the monitors, its store on the disk (the superblock records the id), its keyring in CONF_DIR/osd.N.keyring (0600). Prints the id.") { data, size, wipe };
        create.SetAction(async (parse, ct) =>
        {
            var path = parse.GetRequiredValue(data);
            var fresh = !File.Exists(path);
            if (fresh)
            {
                if (path.StartsWith("/dev/", StringComparison.Ordinal))
                {
                    throw new CliException(ExitCodes.NotFound, $"{path} does not exist");
                }
                var bytes = parse.GetValue(size) is { } sz ? ByteSize.Parse(sz, "--size") : 8L << 30;
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
                await using (var f = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
                {
                    f.SetLength(bytes);
                }
            }
            await using var client = MonitorCommands.Client(parse);
            int id;
            try
            {
                id = await CreateOnAsync(client, MonitorCommands.LoadConf(parse), MonitorCommands.ConfDirOf(parse), path, parse.GetValue(wipe), ct);
            }
            catch (CliException) when (fresh)
            {
                // A file made just now holds nothing of value.
                File.Delete(path);
                throw;
            }
            await parse.InvocationConfiguration.Output.WriteLineAsync(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            return ExitCodes.Ok;
        });
        return create;
    }

    /// <summary>
    /// What `osd create` does once the disk exists: a new id and key from the monitors (<see cref="OsdCreate"/>), the
    /// store on <paramref name="path"/> (its superblock names the cluster and the id; <paramref name="wipe"/> lets mkfs
    /// overwrite a foreign signature), and the keyring CONF_DIR/osd.N.keyring (0600). Returns the id.
    /// </summary>
    internal static async Task<int> CreateOnAsync(MonClient client, ClusterConf conf, string confDir, string path, bool wipe, CancellationToken ct)
    {
        var uuid = Guid.NewGuid();
        var key = Secret.Generate();
        MonReply reply;
        try
        {
            reply = await client.CommandAsync(new OsdCreate(uuid, key), ct);
        }
        catch (MonitorsUnavailableException e)
        {
            throw new CliException(ExitCodes.Failure, e.Message);
        }
        if (reply.Status != MonReplyStatus.Ok || reply.Data is not { Length: 4 } idBytes)
        {
            throw new CliException(reply.Status == MonReplyStatus.Denied ? ExitCodes.PermissionDenied : ExitCodes.Failure, $"the monitors refused to create an OSD: {reply.Message}");
        }
        var id = BinaryPrimitives.ReadInt32LittleEndian(idBytes);
        try
        {
            await using var device = FileDevice.Open(path);
            await ObjectStore.MkfsAsync(device, new MkfsOptions { OsdId = id, ClusterId = conf.Fsid, StoreId = uuid, Wipe = wipe }, ct);
        }
        catch (Exception e) when (e is StoreException or DeviceInUseException or IOException)
        {
            throw new CliException(e is ForeignSignatureException ? ExitCodes.Refused : ExitCodes.Failure,
                $"osd.{id} exists in the maps but its store could not be made on {path}: {e.Message}");
        }
        var keyring = new Keyring();
        keyring.Add(new KeyringEntry($"osd.{id}", key, OsdCaps));
        keyring.Save(OsdDaemon.KeyringPath(confDir, id));
        return id;
    }

    private static Command Run()
    {
        var id = new Argument<int>("id") { Description = "The OSD's id (as `osd create` printed it)." };
        var data = new Option<string>("--data") { Description = "Its disk: a block device or a file, made by `osd create`.", Required = true };
        var addr = new Option<string>("--addr") { Description = "Address to listen on, IP or IP:PORT (default: the node's address in CONF_DIR/node.conf, else 127.0.0.1; a free port)." };
        var host = new Option<string>("--host") { Description = "The host it is on, for CRUSH (default: the node's name in CONF_DIR/node.conf, else this machine's name)." };
        var run = new Command("run", "Run one OSD in the foreground until it is stopped (SIGTERM or Ctrl-C: it tells the monitors first).") { id, data, addr, host };
        run.SetAction(async (parse, ct) =>
        {
            // As for monitors: nothing an OSD's socket continuation does blocks its thread.
            SocketCompletions.RunInline();
            // A node made by bootstrap/join names itself and its address (so a systemd unit needs neither).
            var node = NodeConf.Load(MonitorCommands.ConfDirOf(parse));
            var listen = new IPEndPoint(node is null ? IPAddress.Loopback : IPAddress.Parse(node.Address), 0);
            if (parse.GetValue(addr) is { } a)
            {
                if (IPEndPoint.TryParse(a, out var ep))
                {
                    listen = ep;
                }
                else if (IPAddress.TryParse(a, out var ip))
                {
                    listen = new IPEndPoint(ip, 0);
                }
                else
                {
                    throw new CliException(ExitCodes.Usage, $"--addr {a}: write IP or IP:PORT, e.g. 127.0.0.1:6800");
                }
            }
            var osdId = parse.GetRequiredValue(id);
            using var loggers = DaemonLogging.Create();
            var options = new OsdDaemonOptions(osdId, parse.GetRequiredValue(data), MonitorCommands.ConfDirOf(parse))
            {
                Listen = listen,
                Host = parse.GetValue(host) ?? node?.Name ?? Environment.MachineName,
            };
            var daemon = new OsdDaemon(options, loggers);
            try
            {
                await daemon.StartAsync(ct);
            }
            catch (Exception e) when (e is InvalidOperationException or FileNotFoundException or Appliance.Maps.Client.MonitorsUnavailableException or Appliance.Wire.Auth.AuthenticationException)
            {
                await daemon.DisposeAsync();
                throw new CliException(ExitCodes.Failure, e.Message);
            }
            // The address on stdout, for scripts (cluster up reads it).
            await parse.InvocationConfiguration.Output.WriteLineAsync($"osd.{osdId} listening on {daemon.Address}");
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
                loggers.CreateLogger("Appliance.Osd").LogInformation("osd.{Id} stopping", osdId);
            }
            await daemon.StopAsync();
            return ExitCodes.Ok;
        });
        return run;
    }

}
