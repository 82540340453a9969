using System.CommandLine;
using Appliance.Cli.Commands;

namespace Appliance.Cli;

public static partial class CliApp
{
    static partial void AddBlockDevCommands(RootCommand root)
    {
        root.Subcommands.Add(NbdCommands.Create());
        root.Subcommands.Add(ImageCommands.Create());
    }
}
