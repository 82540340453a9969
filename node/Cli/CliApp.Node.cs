using System.CommandLine;
using Appliance.Cli.Commands;

namespace Appliance.Cli;

public static partial class CliApp
{
    /// <summary>`bootstrap` (the first node), and the node commands.</summary>
    static partial void AddNodeCommands(RootCommand root)
    {
        root.Subcommands.Add(BootstrapCommand.Create());
        foreach (var c in NodeCommands.Create())
        {
            root.Subcommands.Add(c);
        }
    }
}
