using System.CommandLine;
using Appliance.Cli.Commands;

namespace Appliance.Cli;

public static partial class CliApp
{
    static partial void AddFsCommands(RootCommand root) => root.Subcommands.Add(FsCommands.Create());
}
