using System.CommandLine;
using Appliance.Cli.Commands;

namespace Appliance.Cli;

public static partial class CliApp
{
    static partial void AddStoreCommands(RootCommand root) => root.Subcommands.Add(StoreCommands.Create());
}
