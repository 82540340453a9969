using System.CommandLine;
using Appliance.Cli.Commands;

namespace Appliance.Cli;

public static partial class CliApp
{
    static partial void AddDiskCommands(RootCommand root) => root.Subcommands.Add(DiskCommands.Create());
}
