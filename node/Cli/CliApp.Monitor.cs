using System.CommandLine;
using Appliance.Cli.Commands;

namespace Appliance.Cli;

public static partial class CliApp
{
    static partial void AddMonitorCommands(RootCommand root)
    {
        foreach (var c in MonitorCommands.Create())
        {
            root.Subcommands.Add(c);
        }
    }
}
