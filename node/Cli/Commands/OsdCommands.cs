using System.CommandLine;
using System.Net;
using Appliance.Cli.Common;
using Appliance.Osd.Daemon;
using Appliance.Wire.Messenger;
using Microsoft.Extensions.Logging;

namespace Appliance.Cli.Commands;

/// <summary>`osd run`: one OSD in the foreground (node/Osd).</summary>
public static class OsdCommands
{
    public static void AddTo(Command osd)
    {
        osd.Subcommands.Add(Run());
    }

    private static Command Run()
    {
        var id = new Argument<int>("id") { Description = "The OSD's id (as `osd create` printed it)." };
        var data = new Option<string>("--data") { Description = "Its disk: a block device or a file, made by `osd create`.", Required = true };
        var addr = new Option<string>("--addr") { Description = "Address to listen on, IP or IP:PORT (default: 127.0.0.1 and a free port)." };
        var host = new Option<string>("--host") { Description = "The host it is on, for CRUSH (default: this machine's name)." };
        var run = new Command("run", "Run one OSD in the foreground until it is stopped (SIGTERM or Ctrl-C: it tells the monitors first).") { id, data, addr, host };
        run.SetAction(async (parse, ct) =>
        {
            // As for monitors: nothing an OSD's socket continuation does blocks its thread.
            SocketCompletions.RunInline();
            var listen = new IPEndPoint(IPAddress.Loopback, 0);
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
                Host = parse.GetValue(host) ?? Environment.MachineName,
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
