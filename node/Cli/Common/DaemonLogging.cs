using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Appliance.Cli.Common;

/// <summary>
/// How daemons run by this program log: through Microsoft.Extensions.Logging, one line per event on stderr — with
/// timestamps for a terminal or a log file, in the systemd journal's format (priority prefixes, no timestamps: the
/// journal keeps its own) when systemd started the process (it sets JOURNAL_STREAM). The level is Information, or
/// what APPLIANCE_LOG says (trace, debug, information, warning, error).
/// </summary>
public static class DaemonLogging
{
    public static ILoggerFactory Create()
    {
        var level = Enum.TryParse<LogLevel>(Environment.GetEnvironmentVariable("APPLIANCE_LOG"), ignoreCase: true, out var l) ? l : LogLevel.Information;
        var underSystemd = Environment.GetEnvironmentVariable("JOURNAL_STREAM") is { Length: > 0 };
        return LoggerFactory.Create(builder =>
        {
            builder.SetMinimumLevel(level);
            if (underSystemd)
            {
                builder.AddSystemdConsole(o => o.IncludeScopes = false);
            }
            else
            {
                builder.AddSimpleConsole(o =>
                {
                    o.SingleLine = true;
                    o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                    o.UseUtcTimestamp = true;
                    o.ColorBehavior = LoggerColorBehavior.Disabled;
                });
            }
            builder.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        });
    }
}
